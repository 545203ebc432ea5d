"""WPSSAMDatasetMapper: SAM resizing, boxes in the resized frame, GT at the original size, cache."""

import logging
import os

import wps_sam  # noqa: F401  isort:skip  (compatibility layer before detectron2)
import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog
from detectron2.structures import BoxMode
from PIL import Image

from wps_sam import add_wps_sam_config
from wps_sam.data import WPSSAMDatasetMapper
from wps_sam.data.dataset_mappers.wps_sam_dataset_mapper import embedding_cache_path
from wps_sam.data.datasets.register_partimagenet import register_all_partimagenet

from partimagenet_fixture import FIXTURE_IMAGES, label_map, make_partimagenet

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cfg(image_size=1024, cache_dir=""):
    cfg = get_cfg()
    add_wps_sam_config(cfg)
    cfg.INPUT.FORMAT = "RGB"  # SAM's input, set by every WPS-SAM config (Base-WPS-SAM.yaml)
    cfg.MODEL.SAM.IMAGE_SIZE = image_size
    cfg.INPUT.EMBEDDING_CACHE_DIR = cache_dir
    return cfg


@pytest.fixture(scope="module")
def pin_dicts(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("pin_mapper"))
    make_partimagenet(root, "val")
    register_all_partimagenet(root, name_prefix="pin_mapper_fixture")
    dicts = DatasetCatalog.get("pin_mapper_fixture_val")
    return {os.path.splitext(os.path.basename(d["file_name"]))[0]: d for d in dicts}


def test_eval_mapping_boxes_in_1024_frame_and_gt_at_original_size(pin_dicts):
    d = pin_dicts["n01440764_101"]  # 40 x 60
    out = WPSSAMDatasetMapper(_cfg(), is_train=False)(d)
    # Longest side 60 -> 1024; the short side 40 * 1024 / 60 = 682.67 rounds to 683.
    assert out["image"].dtype == torch.uint8 and tuple(out["image"].shape) == (3, 683, 1024)
    assert (out["height"], out["width"]) == (40, 60)
    inst = out["instances"]
    assert inst.image_size == (683, 1024)
    assert inst.gt_classes.tolist() == [0, 1, 2] and inst.gt_classes.dtype == torch.int64
    sx, sy = 1024 / 60, 683 / 40
    expected = torch.tensor(
        [
            [4 * sx, 6 * sy, 14 * sx, 14 * sy],
            [20 * sx, 10 * sy, 50 * sx, 30 * sy],
            [52 * sx, 30 * sy, 58 * sx, 38 * sy],
        ]
    )
    assert torch.allclose(inst.gt_boxes.tensor, expected, atol=1e-3)
    # Semantic GT: the label PNG, unresized, int64.
    assert out["sem_seg"].dtype == torch.int64
    h, w, anns = FIXTURE_IMAGES["n01440764_101"]
    assert torch.equal(out["sem_seg"], torch.from_numpy(label_map(h, w, anns).astype(np.int64)))
    assert "image_embedding" not in out and out["file_name"] == d["file_name"]


def test_train_mapping_reads_no_masks_and_keeps_empty_images(pin_dicts):
    mapper = WPSSAMDatasetMapper(_cfg(image_size=128), is_train=True)
    out = mapper(pin_dicts["n02085620_303"])  # 50 x 20 (h x w): tall image
    assert tuple(out["image"].shape) == (3, 128, 51)  # 20 * 128 / 50 = 51.2 -> 51
    assert "sem_seg" not in out  # weak supervision: training never reads the pixel labels
    assert len(out["instances"]) == 1
    empty = mapper(pin_dicts["n01443537_202"])
    assert len(empty["instances"]) == 0 and tuple(empty["instances"].gt_boxes.tensor.shape) == (
        0,
        4,
    )


def test_rgb_order(tmp_path):
    path = str(tmp_path / "red.png")
    pixels = np.zeros((8, 16, 3), dtype=np.uint8)
    pixels[..., 0] = 255  # pure red in RGB
    Image.fromarray(pixels).save(path)
    out = WPSSAMDatasetMapper(_cfg(image_size=32), is_train=True)(
        {"file_name": path, "height": 8, "width": 16, "image_id": 0}
    )
    assert tuple(out["image"].shape) == (3, 16, 32)
    assert (out["image"][0] == 255).all() and (out["image"][1:] == 0).all()
    assert "instances" not in out  # no annotations in the dict -> no instances


def test_degenerate_boxes_dropped_and_counted(pin_dicts, caplog):
    d = dict(pin_dicts["n01440764_101"])
    d["annotations"] = [
        {"bbox": [10, 10, 5, 5], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 3},
        {"bbox": [70, 10, 80, 20], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 4},  # outside
        {"bbox": [5, 5, 5, 9], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 5},  # zero width
        {"bbox": [1, 1, 3, 3], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 6, "iscrowd": 1},
    ]
    before = dict(WPSSAMDatasetMapper.dropped_counts)
    with caplog.at_level(logging.WARNING):
        out = WPSSAMDatasetMapper(_cfg(image_size=60), is_train=True)(d)  # scale 1: 40 x 60
    assert out["instances"].gt_classes.tolist() == [3]
    assert out["instances"].gt_boxes.tensor.tolist() == [[10.0, 10.0, 15.0, 15.0]]
    after = WPSSAMDatasetMapper.dropped_counts
    key = "box with no area after clipping"
    assert after[key] - before.get(key, 0) == 2
    assert after["crowd annotation"] - before.get("crowd annotation", 0) == 1
    assert "n01440764_101.JPEG" in caplog.text and key in caplog.text


def test_unreadable_image_names_the_file(tmp_path):
    path = str(tmp_path / "broken.JPEG")
    with open(path, "wb") as f:
        f.write(b"this is not a jpeg")
    mapper = WPSSAMDatasetMapper(_cfg(), is_train=False)
    with pytest.raises(OSError, match="broken.JPEG"):
        mapper({"file_name": path, "height": 10, "width": 10, "image_id": 0})


def test_embedding_cache(pin_dicts, tmp_path):
    d = pin_dicts["n01440764_101"]
    cfg = _cfg(image_size=128, cache_dir=str(tmp_path))
    cfg.MODEL.SAM.PATCH_SIZE = 16
    path = embedding_cache_path(str(tmp_path), d["file_name"])
    assert path == os.path.join(str(tmp_path), "n01440764_101.pt")
    mapper = WPSSAMDatasetMapper(cfg, is_train=False)
    assert "image_embedding" not in mapper(d)  # no file yet: the model runs the encoder
    embedding = torch.randn(256, 8, 8)
    torch.save(embedding, path)
    assert torch.equal(mapper(d)["image_embedding"], embedding)
    torch.save(torch.randn(256, 4, 4), path)  # made by another SAM
    with pytest.raises(ValueError, match="another SAM"):
        mapper(d)


def test_build_embedding_cache_writes_checks_and_rebuilds(pin_dicts, tmp_path):
    from detectron2.modeling import build_model

    from wps_sam.data.embedding_cache import build_embedding_cache
    from wps_sam.modeling.sam_builder import build_sam, sam_architecture_from_cfg

    cfg = get_cfg()
    add_wps_sam_config(cfg)
    cfg.merge_from_file(os.path.join(REPO_ROOT, "configs", "tests", "tiny_random_sam.yaml"))
    cache = str(tmp_path / "cache")
    cfg.INPUT.EMBEDDING_CACHE_DIR = cache
    torch.manual_seed(0)
    sam_path = str(tmp_path / "sam_a.pth")
    torch.save(build_sam(sam_architecture_from_cfg(cfg)).state_dict(), sam_path)
    cfg.MODEL.SAM.CHECKPOINT = sam_path
    model = build_model(cfg)
    counts = build_embedding_cache(cfg, model, ["pin_mapper_fixture_val"])
    assert counts == {"written": len(pin_dicts), "present": 0, "stale": 0}
    d = pin_dicts["n01440764_101"]
    cached = WPSSAMDatasetMapper(cfg, False)(d)["image_embedding"]
    direct = model.image_embeddings([{"image": WPSSAMDatasetMapper(cfg, False)(d)["image"]}])[0]
    torch.testing.assert_close(cached, direct, rtol=1e-3, atol=1e-3)  # stored as float16
    # A second call only counts what is there.
    assert build_embedding_cache(cfg, model, ["pin_mapper_fixture_val"])["written"] == 0
    # An image rewritten after it was encoded (a regenerated dataset) is encoded again.
    with open(d["file_name"], "rb") as f:
        data = f.read()
    with open(d["file_name"], "wb") as f:
        f.write(data)
    counts = build_embedding_cache(cfg, model, ["pin_mapper_fixture_val"])
    assert counts == {"written": 1, "present": len(pin_dicts) - 1, "stale": 1}

    # Another checkpoint: refused by default, rebuilt on request (the main job's behaviour).
    other = str(tmp_path / "sam_b.pth")
    torch.save(build_sam(sam_architecture_from_cfg(cfg)).state_dict(), other)
    cfg.MODEL.SAM.CHECKPOINT = other
    with pytest.raises(ValueError, match="another SAM"):
        build_embedding_cache(cfg, model, ["pin_mapper_fixture_val"])
    counts = build_embedding_cache(cfg, model, ["pin_mapper_fixture_val"], rebuild_stale=True)
    assert counts == {"written": len(pin_dicts), "present": 0, "stale": 0}
