"""SAM pseudo-labels (paper Table 5): the label-map rule checked by hand, and the writer on a tiny
synthetic dataset with a tiny random SAM: batched, resumable, atomic, with its quality report."""

import os

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model
from PIL import Image

from wps_sam.cli_config import load_wps_sam_cfg
from wps_sam.data import WPSSAMDatasetMapper
from wps_sam.data.datasets.register_pseudo_labels import register_pseudo_label_dataset
from wps_sam.data.datasets.register_synthetic_parts import register_all_synthetic_parts
from wps_sam.data.pseudo_labels import (
    generate_pseudo_labels,
    label_map_from_output,
    pseudo_label_path,
    pseudo_label_quality,
)
from wps_sam.modeling.mask_merge import part_segmentation_result
from wps_sam.synthetic.parts import generate_synthetic_parts

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_label_map_by_hand():
    """3x3 image, 2 classes (background 2), GT-box prompts (score 1): class 0's mask covers the
    top two rows (logit 1), class 1's the right column (logit 3): they overlap at (0,2), (1,2)."""
    logits = torch.tensor(
        [
            [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [-5.0, -5.0, -5.0]],
            [[-5.0, -5.0, 3.0], [-5.0, -5.0, 3.0], [-5.0, -5.0, 3.0]],
        ]
    )
    out = part_segmentation_result(logits, torch.tensor([0, 1]), torch.ones(2), num_classes=2)
    # "score": the overlap goes to the higher mask logit (class 1); uncovered pixels background.
    assert label_map_from_output(out, "score").tolist() == [[0, 0, 1], [0, 0, 1], [2, 2, 1]]
    # "ignore": the overlap is 255.
    assert label_map_from_output(out, "ignore").tolist() == [[0, 0, 255], [0, 0, 255], [2, 2, 1]]
    assert label_map_from_output(out).dtype == np.uint8
    with pytest.raises(ValueError, match="OVERLAP"):
        label_map_from_output(out, "smallest")


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("datasets") / "synthetic_parts"
    for split, n in (("train", 5), ("val", 1), ("test", 1)):
        generate_synthetic_parts(
            str(root), split, num_images=n, seed=11, num_workers=0, show_progress=False
        )
    register_all_synthetic_parts(str(root), name_prefix="t15_parts")
    return "t15_parts_train"


def test_writer_resume_and_quality(tiny_dataset, tmp_path):
    cfg = load_wps_sam_cfg(
        os.path.join(REPO, "configs", "tests", "tiny_random_sam.yaml"),
        [
            "MODEL.META_ARCHITECTURE",
            "SAMGTPrompted",
            "MODEL.GT_PROMPTED_SAM.PROMPT",
            "box",
            "MODEL.WPS_SAM.NUM_CLASSES",
            "20",
            "DATASETS.TRAIN",
            f"('{tiny_dataset}',)",
            "DATASETS.TEST",
            "()",
        ],
    )
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    out_dir = str(tmp_path / "pseudo")
    dicts = DatasetCatalog.get(tiny_dataset)

    # An interrupted run: 2 of 5 written, plus a half-written temporary file left behind.
    first = generate_pseudo_labels(cfg, model, tiny_dataset, out_dir, batch_size=2, max_images=2)
    assert (first["written"], first["present"]) == (2, 3)
    done = [pseudo_label_path(out_dir, d["file_name"]) for d in dicts[:2]]
    mtimes = [os.path.getmtime(p) for p in done]
    with open(pseudo_label_path(out_dir, dicts[2]["file_name"]) + ".tmp", "wb") as f:
        f.write(b"\x89PNG truncated")
    second = generate_pseudo_labels(cfg, model, tiny_dataset, out_dir, batch_size=2)
    assert (second["written"], second["present"], second["images"]) == (3, 2, 5)
    assert [os.path.getmtime(p) for p in done] == mtimes  # resumed: not rewritten

    # Resuming changes nothing: an uninterrupted run at the same batch size (the same batches,
    # [0, 1], [2, 3], [4], so the same code path and the same floating-point operations) writes
    # the same files, byte for byte.
    fresh_dir = str(tmp_path / "pseudo_fresh")
    fresh = generate_pseudo_labels(cfg, model, tiny_dataset, fresh_dir, batch_size=2)
    assert (fresh["written"], fresh["present"]) == (5, 0)
    for d in dicts:
        with open(pseudo_label_path(out_dir, d["file_name"]), "rb") as f:
            resumed_bytes = f.read()
        with open(pseudo_label_path(fresh_dir, d["file_name"]), "rb") as f:
            assert f.read() == resumed_bytes

    # Each PNG is the argmax of SAM prompted with the image's GT boxes, in the dataset's ids:
    # exactly that of a forward of the same batch of 2 (the same floating-point operations) ...
    mapper = WPSSAMDatasetMapper(cfg, is_train=True)
    batches = [dicts[0:2], dicts[2:4], dicts[4:5]]  # the writer's batches at batch_size=2
    for batch in batches:
        with torch.no_grad():
            outputs = model([mapper(d) for d in batch])
        for d, output in zip(batch, outputs):
            written = np.asarray(Image.open(pseudo_label_path(out_dir, d["file_name"])))
            assert written.shape == (d["height"], d["width"])
            assert set(np.unique(written).tolist()) <= set(range(21))
            assert np.array_equal(written, label_map_from_output(output))
            # ... and, up to floating-point ties, that of a one-image forward. A batch of 2 runs
            # other kernels (other summation orders) than a batch of 1, so two mask logits that tie
            # to the last bit in one can be ordered the other way in the other: on a 2-core CPU of
            # the project's kind 1 pixel of 65,536 differs. Allow 0.1% of the pixels.
            with torch.no_grad():
                alone = label_map_from_output(model([mapper(d)])[0])
            assert (written == alone).mean() >= 0.999

    quality = pseudo_label_quality(tiny_dataset, out_dir)
    assert quality["num_images"] == 5 and 0.0 <= quality["mIoU"] <= 100.0
    assert quality["ignored_fraction"] == 0.0

    # The registered dataset trains any segmentation model on them: no boxes, pseudo label maps.
    register_pseudo_label_dataset("t15_parts_train_pseudo", tiny_dataset, out_dir)
    pseudo = DatasetCatalog.get("t15_parts_train_pseudo")
    assert len(pseudo) == 5 and all("annotations" not in d for d in pseudo)
    assert all(d["sem_seg_file_name"].startswith(out_dir) for d in pseudo)

    # The folder belongs to one SAM and rule.
    with pytest.raises(ValueError, match="another SAM or rule"):
        generate_pseudo_labels(cfg, model, tiny_dataset, out_dir, overlap="ignore")
