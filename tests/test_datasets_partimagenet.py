"""PartImageNet registration and loading on a fixture in the release's exact layout and quirks."""

import json
import logging
import os

import wps_sam  # noqa: F401  isort:skip  (compatibility layer before detectron2)
import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json
from detectron2.structures import BoxMode
from PIL import Image

from wps_sam.data.datasets.register_partimagenet import (
    PARTIMAGENET_PART_CLASSES,
    DatasetFilesMissingError,
    load_partimagenet_json,
    register_all_partimagenet,
    register_partimagenet_style_split,
)

from partimagenet_fixture import BACKGROUND, PARTIMAGENET_NAMES, make_partimagenet


@pytest.fixture
def pin_root(tmp_path):
    make_partimagenet(str(tmp_path), split="val")
    return str(tmp_path)


def _by_stem(dicts):
    return {os.path.splitext(os.path.basename(d["file_name"]))[0]: d for d in dicts}


def test_builtin_splits_registered_with_contract_metadata():
    assert PARTIMAGENET_PART_CLASSES == PARTIMAGENET_NAMES
    root = os.getenv("DETECTRON2_DATASETS", "datasets")
    for split in ("train", "val", "test"):
        name = f"partimagenet_{split}"
        assert name in DatasetCatalog.list()
        meta = MetadataCatalog.get(name)
        assert meta.stuff_classes == PARTIMAGENET_NAMES + ["background"]
        assert meta.thing_classes == PARTIMAGENET_NAMES
        assert meta.ignore_label == 255 and meta.background_id == 40
        assert meta.evaluator_type == "sem_seg"
        assert meta.json_file == os.path.join(
            root, "PartImageNet", "annotations", split, f"{split}.json"
        )
        assert meta.sem_seg_root == os.path.join(root, "PartImageNet", "annotations", split)
        assert meta.image_root == os.path.join(root, "PartImageNet", "images", split)


def test_load_fixture_keeps_boxes_through_quirks(pin_root, caplog):
    register_all_partimagenet(pin_root, name_prefix="pin_fixture_a")
    with caplog.at_level(logging.INFO):
        dicts = DatasetCatalog.get("pin_fixture_a_val")
    assert len(dicts) == 3
    recs = _by_stem(dicts)

    first = recs["n01440764_101"]
    assert (first["height"], first["width"]) == (40, 60)
    assert os.path.isfile(first["file_name"]) and os.path.isfile(first["sem_seg_file_name"])
    assert first["sem_seg_file_name"].endswith(
        os.path.join("annotations", "val", "n01440764_101.png")
    )
    anns = {a["category_id"]: a for a in first["annotations"]}
    # Head: normal; Body: its 4-number polygon dropped but the box kept; Foot: area 0 kept;
    # Tail: zero-width box dropped.
    assert sorted(anns) == [0, 1, 2]
    assert anns[0]["segmentation"] == [[4, 6, 14, 6, 14, 14, 4, 14]]
    assert "segmentation" not in anns[1] and anns[1]["bbox"] == [20.0, 10.0, 30.0, 20.0]
    assert anns[2]["area"] == 0 and anns[2]["bbox"] == [52.0, 30.0, 6.0, 8.0]
    assert all(a["bbox_mode"] == BoxMode.XYWH_ABS and a["iscrowd"] == 0 for a in anns.values())

    assert recs["n01443537_202"]["annotations"] == []  # image without annotations: kept
    fin = recs["n02085620_303"]["annotations"]
    assert len(fin) == 1 and fin[0]["category_id"] == 11 and len(fin[0]["segmentation"]) == 1

    # Every quirk is counted in the log, not silently dropped.
    text = caplog.text
    assert "polygons dropped (< 6 numbers), annotation kept: 2" in text
    assert "area-0 annotations kept (valid box): 1" in text  # the foot
    assert "dropped: box missing or with no area: 1" in text
    assert "images without annotations (kept for evaluation): 1" in text

    # The label maps follow the convention: part ids, background 40, no 255.
    label = np.array(Image.open(first["sem_seg_file_name"]))
    assert set(np.unique(label)) == {0, 1, 2, BACKGROUND}


def test_detectron2_coco_loader_would_lose_the_box(pin_root):
    """The reason for our loader: detectron2 drops the instance whose polygon is degenerate."""
    json_file = os.path.join(pin_root, "PartImageNet", "annotations", "val", "val.json")
    image_root = os.path.join(pin_root, "PartImageNet", "images", "val")
    theirs = _by_stem(load_coco_json(json_file, image_root))
    ours = _by_stem(load_partimagenet_json(json_file, image_root, image_root))
    cats = lambda d: sorted(a["category_id"] for a in d["annotations"])  # noqa: E731
    assert 1 not in cats(theirs["n01440764_101"])
    assert 1 in cats(ours["n01440764_101"])


def test_missing_files_error_only_when_used(tmp_path):
    calls = []
    register_partimagenet_style_split(
        "pin_missing_fixture",
        image_root=str(tmp_path / "nope" / "images"),
        json_file=str(tmp_path / "nope" / "val.json"),
        sem_seg_root=str(tmp_path / "nope" / "labels"),
        class_names=["a", "b"],
        before_load=lambda: calls.append(1),
    )
    meta = MetadataCatalog.get("pin_missing_fixture")
    assert meta.stuff_classes == ["a", "b", "background"] and meta.background_id == 2
    assert calls == []  # registration touches nothing
    with pytest.raises(DatasetFilesMissingError) as err:
        DatasetCatalog.get("pin_missing_fixture")
    assert calls == [1]  # before_load ran first (e.g. to generate data on first use)
    assert str(tmp_path / "nope" / "val.json") in str(err.value)
    assert "datasets/README.md" in str(err.value)


def test_before_load_can_generate_the_data(tmp_path):
    root = str(tmp_path)
    base = os.path.join(root, "PartImageNet")
    register_partimagenet_style_split(
        "pin_generated_fixture",
        image_root=os.path.join(base, "images", "val"),
        json_file=os.path.join(base, "annotations", "val", "val.json"),
        sem_seg_root=os.path.join(base, "annotations", "val"),
        class_names=PARTIMAGENET_NAMES,
        before_load=lambda: make_partimagenet(root, "val"),
    )
    assert len(DatasetCatalog.get("pin_generated_fixture")) == 3


def test_class_names_are_checked_against_the_json(pin_root):
    base = os.path.join(pin_root, "PartImageNet")
    wrong = list(PARTIMAGENET_NAMES)
    wrong[25] = "Car Tire"
    register_partimagenet_style_split(
        "pin_wrong_names_fixture",
        image_root=os.path.join(base, "images", "val"),
        json_file=os.path.join(base, "annotations", "val", "val.json"),
        sem_seg_root=os.path.join(base, "annotations", "val"),
        class_names=wrong,
    )
    with pytest.raises(ValueError, match="Car Tire"):
        DatasetCatalog.get("pin_wrong_names_fixture")


def test_non_contiguous_category_ids_are_rejected(pin_root):
    json_file = os.path.join(pin_root, "PartImageNet", "annotations", "val", "val.json")
    with open(json_file) as f:
        data = json.load(f)
    for c in data["categories"]:
        c["id"] += 1
    bad = os.path.join(pin_root, "bad.json")
    with open(bad, "w") as f:
        json.dump(data, f)
    with pytest.raises(ValueError, match="contiguous ids 0..C-1"):
        load_partimagenet_json(bad, pin_root, pin_root)
