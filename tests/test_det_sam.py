"""Det-SAM (paper Table 4): the shared merge rule, the SAM-encoder backbone's shapes, and Det-SAM
end to end through tools/train_net.py on a tiny detector and a tiny random SAM."""

import json
import os
import subprocess
import sys

import pytest
import torch

from wps_sam.modeling.mask_merge import merge_part_masks, part_segmentation_result
from wps_sam.modeling.sam_builder import build_sam
from wps_sam.modeling.sam_encoder_backbone import SAMEncoderBackbone

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_merge_rule_by_hand():
    """2 parts on a 2x3 image: class 0 (score 1) covers the left two columns with logit 2, class 1
    (score 0.5) the right two with logit 4; nothing covers the bottom-left pixel."""
    logits = torch.tensor(
        [
            [[2.0, 2.0, -1.0], [-1.0, 2.0, -1.0]],
            [[-1.0, 4.0, 4.0], [-1.0, 4.0, 4.0]],
        ]
    )
    classes, scores = torch.tensor([0, 1]), torch.tensor([1.0, 0.5])
    sem = merge_part_masks(logits, classes, scores, num_classes=2)
    s2, s4 = torch.sigmoid(torch.tensor(2.0)), torch.sigmoid(torch.tensor(4.0))
    assert torch.allclose(sem[0], torch.tensor([[s2, s2, 0], [0, s2, 0]]))
    assert torch.allclose(sem[1], torch.tensor([[0, 0.5 * s4, 0.5 * s4], [0, 0.5 * s4, 0.5 * s4]]))
    assert sem[2].tolist() == [[0, 0, 0], [1, 0, 0]]
    # Overlap (middle column): 1 * sigmoid(2) = 0.881 > 0.5 * sigmoid(4) = 0.491, so class 0.
    assert sem.argmax(0).tolist() == [[0, 0, 1], [2, 0, 1]]
    boxes = torch.tensor([[0.0, 0.0, 2.0, 2.0], [1.0, 0.0, 3.0, 2.0]])
    out = part_segmentation_result(logits, classes, scores, 2, boxes=boxes)
    assert torch.equal(out["instances"].pred_boxes.tensor, boxes)
    assert out["instances"].pred_masks.sum().item() == 3 + 4


def test_sam_encoder_backbone_shapes(tiny_sam_arch):
    """Tiny SAM: 128 px, patch 16 -> 8x8 embedding; levels p2..p5 (+ p6) at strides 4..64."""
    sam = build_sam(tiny_sam_arch)
    backbone = SAMEncoderBackbone(sam.image_encoder, patch_size=16, out_channels=32)
    assert backbone.size_divisibility == 128
    shapes = backbone.output_shape()
    assert {k: (v.channels, v.stride) for k, v in shapes.items()} == {
        "p2": (32, 4),
        "p3": (32, 8),
        "p4": (32, 16),
        "p5": (32, 32),
        "p6": (32, 64),
    }
    x = torch.randn(2, 3, 128, 96)  # narrower than SAM's square: padded inside
    features = backbone(x)
    assert {k: tuple(v.shape) for k, v in features.items()} == {
        "p2": (2, 32, 32, 32),
        "p3": (2, 32, 16, 16),
        "p4": (2, 32, 8, 8),
        "p5": (2, 32, 4, 4),
        "p6": (2, 32, 2, 2),
    }
    # The encoder is frozen, the pyramid trains.
    assert not any(p.requires_grad for p in backbone.sam_encoder.parameters())
    assert all(p.requires_grad for p in backbone.stages.parameters())
    # Cached embeddings give exactly the encoder's features (the embedding cache path).
    with torch.no_grad():
        embedding = sam.image_encoder(torch.nn.functional.pad(x, (0, 32)))
        with backbone.precomputed_embeddings(embedding):
            cached = backbone(x)
        direct = backbone(x)
    for k in direct:
        assert torch.allclose(cached[k], direct[k], atol=1e-5), k
    with pytest.raises(ValueError, match="larger than SAM's input"):
        backbone(torch.randn(1, 3, 160, 128))


def _run(cmd, env):
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


TINY_DET_SAM = """_BASE_: "{base}"
MODEL:
  SAM:
    CHECKPOINT: ""
    IMAGE_SIZE: 128
    ENCODER_EMBED_DIM: 32
    ENCODER_DEPTH: 2
    ENCODER_NUM_HEADS: 2
    ENCODER_GLOBAL_ATTN_INDEXES: [1]
    ENCODER_WINDOW_SIZE: 4
    DECODER_MLP_DIM: 64
  FPN:
    OUT_CHANNELS: 16
  ROI_BOX_HEAD:
    FC_DIM: 32
  DET_SAM:
    SCORE_THRESHOLD: 0.0  # an untrained detector's scores are low: prompt SAM with everything
INPUT:
  MIN_SIZE_TRAIN: (128,)
  MAX_SIZE_TRAIN: 128
  MIN_SIZE_TEST: 128
  MAX_SIZE_TEST: 128
  EMBEDDING_CACHE_DIR: ""
SOLVER:
  IMS_PER_BATCH: 2
  MAX_ITER: 3
  STEPS: ()
  WARMUP_ITERS: 0
DATALOADER:
  NUM_WORKERS: 0
OUTPUT_DIR: "{out}"
"""


@pytest.mark.slow
def test_det_sam_end_to_end(tmp_path):
    """Train the detector 3 iterations, then Det-SAM evaluation (segmentation + box AP), then
    --eval-only from the checkpoint, then DefaultPredictor: the same outputs as WPS-SAM's."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["DETECTRON2_DATASETS"] = str(tmp_path / "datasets")
    _run(
        [
            sys.executable,
            "datasets/prepare_synthetic_parts.py",
            "--root",
            str(tmp_path / "datasets" / "synthetic_parts"),
            "--num-train",
            "6",
            "--num-val",
            "3",
            "--num-test",
            "1",
            "--seed",
            "3",
        ],
        env,
    )
    base = os.path.join(REPO, "configs", "synthetic", "det_sam_r18_fpn_scratch.yaml")
    out = tmp_path / "out"
    config = tmp_path / "det_sam_tiny.yaml"
    config.write_text(TINY_DET_SAM.format(base=base, out=out))
    _run([sys.executable, "tools/train_net.py", "--config-file", str(config)], env)
    with open(out / "results.json") as f:
        results = json.load(f)
    for key in ("mIoU", "mIoU-parts", "mACC"):
        assert 0.0 <= results["sem_seg"][key] <= 100.0, key
    assert "mIoU" in results["paper_protocol"]
    assert "AP" in results["bbox"] and "AP50" in results["bbox"]
    ckpt = torch.load(out / "model_final.pth", map_location="cpu", weights_only=False)["model"]
    assert ckpt and all(k.startswith("detector.") for k in ckpt), "SAM's frozen weights saved"

    eval_out = tmp_path / "eval"
    _run(
        [
            sys.executable,
            "tools/train_net.py",
            "--config-file",
            str(config),
            "--eval-only",
            "MODEL.WEIGHTS",
            str(out / "model_final.pth"),
            "OUTPUT_DIR",
            str(eval_out),
        ],
        env,
    )
    with open(eval_out / "results.json") as f:
        again = json.load(f)
    assert again["sem_seg"]["mIoU"] == pytest.approx(results["sem_seg"]["mIoU"], abs=1e-6)
    assert again["bbox"]["AP"] == pytest.approx(results["bbox"]["AP"], abs=1e-6, nan_ok=True)


def test_det_sam_holds_the_frozen_foundation_and_borrows_nothing_from_wps_sam():
    import inspect

    import wps_sam.det_sam_model as det_sam_model
    from wps_sam.modeling.frozen_sam import FrozenFoundation

    source = inspect.getsource(det_sam_model)
    assert "WPSSAM" not in source and "_load_model" not in source
    assert issubclass(det_sam_model.DetSAM, torch.nn.Module)
    assert not issubclass(det_sam_model.DetSAM, FrozenFoundation)
