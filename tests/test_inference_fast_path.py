"""The inference hot path: one resize of the mask logits (MASK_UPSAMPLE "once") against SAM's
resize-crop-resize, and the encoder under bf16 autocast (MODEL.SAM.ENCODER_AUTOCAST)."""

import os

import wps_sam  # noqa: F401  isort:skip
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from torch.nn import functional as F

from wps_sam import add_wps_sam_config

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _model(**overrides):
    cfg = get_cfg()
    add_wps_sam_config(cfg)
    cfg.merge_from_file(os.path.join(REPO_ROOT, "configs", "tests", "tiny_random_sam.yaml"))
    cfg.merge_from_list([x for kv in overrides.items() for x in kv])
    torch.manual_seed(0)
    return build_model(cfg).eval()


@pytest.mark.parametrize(
    "input_size, original_size",
    [
        ((128, 96), (500, 375)),
        ((85, 128), (40, 60)),
        ((128, 51), (50, 20)),
        ((117, 128), (333, 364)),
    ],
)
def test_upsample_once_matches_sam_postprocess(input_size, original_size):
    model = _model()
    torch.manual_seed(1)
    # Smooth low-res logits (32 x 32 for the 128 px SAM), like a mask decoder's.
    low_res = F.avg_pool2d(torch.randn(6, 1, 32, 32) * 4, 5, 1, 2)
    sam = model.sam.postprocess_masks(low_res, input_size, original_size)[:, 0]
    once = model.upsample_once(low_res[:, 0], input_size, original_size)
    assert once.shape == sam.shape == (6, *original_size)
    # Same geometry, one interpolation instead of two: logits close, masks agree on >= 99%.
    assert (once - sam).abs().mean() < 0.05 * sam.abs().mean()
    assert ((once > 0) == (sam > 0)).float().mean() >= 0.99


def test_upsample_once_is_exact_without_resizing():
    model = _model()
    low_res = torch.randn(3, 1, 32, 32)
    full = model.sam.postprocess_masks(low_res, (128, 128), (128, 128))[:, 0]
    torch.testing.assert_close(model.upsample_once(low_res[:, 0], (128, 128), (128, 128)), full)


def test_inference_modes_agree_and_bad_values_are_refused():
    image = torch.randint(0, 256, (3, 96, 128), dtype=torch.uint8)
    x = {"image": image, "height": 96, "width": 128}
    outputs = {}
    for mode in ("once", "sam"):
        model = _model(**{"MODEL.WPS_SAM.TEST.MASK_UPSAMPLE": mode})
        with torch.no_grad():
            outputs[mode] = model([x])[0]["sem_seg"]
    assert outputs["once"].shape == outputs["sam"].shape == (41, 96, 128)
    with pytest.raises(ValueError, match="MASK_UPSAMPLE"):
        _model(**{"MODEL.WPS_SAM.TEST.MASK_UPSAMPLE": "twice"})
    with pytest.raises(ValueError, match="ENCODER_AUTOCAST"):
        _model(**{"MODEL.SAM.ENCODER_AUTOCAST": "fp8"})


def test_bf16_encoder_close_to_fp32():
    images = torch.randn(2, 3, 128, 128)
    fp32 = _model().encode_images(images)
    bf16 = _model(**{"MODEL.SAM.ENCODER_AUTOCAST": "bf16"}).encode_images(images)
    assert bf16.dtype == torch.float32 and bf16.shape == fp32.shape
    assert (bf16 - fp32).norm() / fp32.norm() < 0.05
