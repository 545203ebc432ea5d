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
    once = model.sam.upsample_once(low_res[:, 0], input_size, original_size)
    assert once.shape == sam.shape == (6, *original_size)
    # Same geometry, one interpolation instead of two: logits close, masks agree on >= 99%.
    assert (once - sam).abs().mean() < 0.05 * sam.abs().mean()
    assert ((once > 0) == (sam > 0)).float().mean() >= 0.99


def test_upsample_once_is_exact_without_resizing():
    model = _model()
    low_res = torch.randn(3, 1, 32, 32)
    full = model.sam.postprocess_masks(low_res, (128, 128), (128, 128))[:, 0]
    torch.testing.assert_close(model.sam.upsample_once(low_res[:, 0], (128, 128), (128, 128)), full)


@pytest.mark.parametrize(
    "original_size, min_agree, max_rel_diff",
    [
        # No resize (the 128 px frame holds the image at its own size): both paths interpolate
        # the same low-res cells by 4, so they agree up to floating-point order: labels, masks
        # and every channel of "sem_seg" (within 1e-4) on >= 99.9% of the pixels (all, measured).
        ((96, 128), 0.999, None),
        # Up- and downsampling: one resize against two, on the random tiny SAM's noisy masks
        # (many boundaries; 99.1% and 98.4% of the labels measured): >= 97%, and "sem_seg" within
        # 5% in mean absolute difference (1.8% and 2.8% measured; smooth logits: the test above).
        ((300, 400), 0.97, 0.05),
        ((40, 53), 0.97, 0.05),
    ],
)
def test_inference_modes_agree(original_size, min_agree, max_rel_diff):
    torch.manual_seed(3)
    image = torch.randint(0, 256, (3, 96, 128), dtype=torch.uint8)
    x = {"image": image, "height": original_size[0], "width": original_size[1]}
    outputs = {}
    for mode in ("once", "sam"):
        model = _model(**{"MODEL.SAM.MASK_UPSAMPLE": mode})
        with torch.no_grad():
            outputs[mode] = model([x])[0]
    once, sam = outputs["once"], outputs["sam"]
    assert once["sem_seg"].shape == sam["sem_seg"].shape == (41, *original_size)
    # The prompts do not depend on the upsampling: the same queries, classes and scores.
    inst_once, inst_sam = once["instances"], sam["instances"]
    assert len(inst_once) == len(inst_sam) > 0  # not vacuous: the random prompter keeps queries
    assert inst_once.pred_classes.tolist() == inst_sam.pred_classes.tolist()
    torch.testing.assert_close(inst_once.scores, inst_sam.scores, rtol=0, atol=1e-4)
    # The masks, label maps and merged scores agree on all but a stated fraction of pixels.
    labels_once, labels_sam = once["sem_seg"].argmax(0), sam["sem_seg"].argmax(0)
    assert len(labels_once.unique()) > 1  # parts and background, not a constant map
    assert (labels_once == labels_sam).float().mean() >= min_agree
    assert (inst_once.pred_masks == inst_sam.pred_masks).float().mean() >= min_agree
    diff = (once["sem_seg"] - sam["sem_seg"]).abs()
    if max_rel_diff is None:
        assert (diff.amax(dim=0) <= 1e-4).float().mean() >= min_agree
    else:
        assert diff.mean() <= max_rel_diff * sam["sem_seg"].abs().mean()


def test_bad_inference_values_are_refused():
    with pytest.raises(ValueError, match="MASK_UPSAMPLE"):
        _model(**{"MODEL.SAM.MASK_UPSAMPLE": "twice"})
    with pytest.raises(ValueError, match="ENCODER_AUTOCAST"):
        _model(**{"MODEL.SAM.ENCODER_AUTOCAST": "fp8"})


def test_bf16_encoder_close_to_fp32():
    images = torch.randn(2, 3, 128, 128)
    fp32 = _model().sam.encode(images)
    bf16 = _model(**{"MODEL.SAM.ENCODER_AUTOCAST": "bf16"}).sam.encode(images)
    assert bf16.dtype == torch.float32 and bf16.shape == fp32.shape
    assert (bf16 - fp32).norm() / fp32.norm() < 0.05
