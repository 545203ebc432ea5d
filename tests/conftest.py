"""Fixtures shared by the test suite.

``wps_sam`` is imported first so that its compatibility layer (``wps_sam.compat``) is active before
any test module imports detectron2.
"""

import pytest

import wps_sam  # noqa: F401  isort:skip
from wps_sam.modeling.sam_builder import SamArchitecture


@pytest.fixture
def tiny_sam_arch():
    """A SAM small enough for CPU tests: 128 px input, 8 x 8 image embedding of 256 channels.

    The image encoder has 2 blocks of width 32 (block 0 windowed with 4 x 4 windows, block 1
    global); the mask decoder keeps SAM's 256-channel tokens with a 64-wide MLP. A fresh object per
    test, so a test may change it.
    """
    return SamArchitecture(
        variant="custom",
        image_size=128,
        encoder_embed_dim=32,
        encoder_depth=2,
        encoder_num_heads=2,
        encoder_global_attn_indexes=[1],
        encoder_window_size=4,
        decoder_mlp_dim=64,
    )
