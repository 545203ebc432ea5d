"""PASCAL-Part: real-structure .mat files -> prepare_pascal_part.py -> registered splits."""

import importlib.util
import json
import os

import wps_sam  # noqa: F401  isort:skip  (compatibility layer before detectron2)
import numpy as np
import pytest
import scipy.io
from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image

from wps_sam.data.datasets.register_pascal_part import register_all_pascal_part
from wps_sam.data.pascal_part_classes import (
    PASCAL_PART_BACKGROUND_ID,
    PASCAL_PART_CLASSES,
    PASCAL_PART_EXCLUDED_OBJECTS,
    PASCAL_PART_MERGE_TABLE,
    merged_part_id,
)

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "datasets", "prepare_pascal_part.py")
BG, IGN = PASCAL_PART_BACKGROUND_ID, 255
ID = {name: i for i, name in enumerate(PASCAL_PART_CLASSES)}


def _load_script():
    spec = importlib.util.spec_from_file_location("prepare_pascal_part", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_pascal_part_mat(path, imname, objects):
    """
    Write a .mat with Pascal-Part's structure: ``anno`` (1x1 struct: imname, objects), objects a
    1xN struct array (class, class_ind, mask, parts), parts a 1xM struct array (part_name, mask)
    or an empty 0x0 matrix. ``objects``: list of (class, class index, mask, [(part, mask)]).
    """
    obj_dtype = [("class", "O"), ("class_ind", "O"), ("mask", "O"), ("parts", "O")]
    obj_arr = np.zeros((1, len(objects)), dtype=obj_dtype)
    for j, (cls, ind, mask, parts) in enumerate(objects):
        if parts:
            part_arr = np.zeros((1, len(parts)), dtype=[("part_name", "O"), ("mask", "O")])
            for i, (name, pmask) in enumerate(parts):
                part_arr[0, i] = (name, pmask.astype(np.uint8))
        else:
            part_arr = np.zeros((0, 0))
        obj_arr[0, j] = (cls, np.array([[ind]], dtype=np.uint8), mask.astype(np.uint8), part_arr)
    anno = np.zeros((1, 1), dtype=[("imname", "O"), ("objects", "O")])
    anno[0, 0] = (imname, obj_arr)
    scipy.io.savemat(path, {"anno": anno})


def _box(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def make_pascal_part(root):
    """Fixture under ``root/PASCAL-Part``; returns the expected label maps of the kept images."""
    base = os.path.join(root, "PASCAL-Part")
    voc = os.path.join(base, "VOCdevkit", "VOC2010")
    anno_dir = os.path.join(base, "Annotations_Part")
    for d in (os.path.join(voc, "JPEGImages"), os.path.join(voc, "ImageSets", "Main"), anno_dir):
        os.makedirs(d, exist_ok=True)
    sizes = {"2008_000001": (20, 30), "2008_000002": (10, 10), "2008_000003": (16, 24)}
    for name, (h, w) in sizes.items():
        Image.fromarray(np.full((h, w, 3), 128, np.uint8)).save(
            os.path.join(voc, "JPEGImages", name + ".jpg")
        )
    with open(os.path.join(voc, "ImageSets", "Main", "train.txt"), "w") as f:
        f.write("2008_000001\n2008_000002\n")
    with open(os.path.join(voc, "ImageSets", "Main", "val.txt"), "w") as f:
        f.write("2008_000003\n2008_000004\n")  # 2008_000004 has no .mat

    # 2008_000001: a cat with head (+ an eye inside), torso, two separate front legs, a 4-pixel
    # tail and an unknown part; a chair (a class without parts) on the top rows.
    h, w = sizes["2008_000001"]
    cat_parts = [
        ("head", _box(h, w, 2, 8, 2, 10)),
        ("leye", _box(h, w, 4, 6, 4, 6)),
        ("torso", _box(h, w, 8, 14, 2, 26)),
        ("lfleg", _box(h, w, 14, 18, 3, 7)),
        ("rfleg", _box(h, w, 14, 18, 15, 19)),
        ("tail", _box(h, w, 8, 10, 26, 28)),
        ("whisker", _box(h, w, 2, 3, 20, 22)),
    ]
    write_pascal_part_mat(
        os.path.join(anno_dir, "2008_000001.mat"),
        "2008_000001",
        [
            ("cat", 8, _box(h, w, 2, 18, 2, 28), cat_parts),
            ("chair", 9, _box(h, w, 0, 2, 0, 30), []),
        ],
    )
    label1 = np.full((h, w), BG, np.uint8)
    label1[2:18, 2:28] = IGN
    label1[2:8, 2:10] = ID["cat head"]
    label1[8:14, 2:26] = ID["cat torso"]
    label1[14:18, 3:7] = ID["cat leg"]
    label1[14:18, 15:19] = ID["cat leg"]
    label1[8:10, 26:28] = ID["cat tail"]

    # 2008_000002: only a sofa -> dropped (no part of the 16 classes).
    h, w = sizes["2008_000002"]
    write_pascal_part_mat(
        os.path.join(anno_dir, "2008_000002.mat"),
        "2008_000002",
        [("sofa", 18, _box(h, w, 2, 8, 2, 8), [])],
    )

    # 2008_000003: a person without part annotations (ignored) and a car with a door, a window
    # inside the door and two wheels.
    h, w = sizes["2008_000003"]
    car_parts = [
        ("door_1", _box(h, w, 4, 10, 8, 24)),
        ("window_1", _box(h, w, 4, 7, 10, 14)),
        ("wheel_1", _box(h, w, 12, 16, 8, 12)),
        ("wheel_2", _box(h, w, 12, 16, 18, 22)),
    ]
    write_pascal_part_mat(
        os.path.join(anno_dir, "2008_000003.mat"),
        "2008_000003",
        [
            ("person", 15, _box(h, w, 0, 16, 0, 6), []),
            ("car", 7, _box(h, w, 4, 16, 8, 24), car_parts),
        ],
    )
    label3 = np.full((h, w), BG, np.uint8)
    label3[0:16, 0:6] = IGN
    label3[4:16, 8:24] = IGN
    label3[4:10, 8:24] = ID["car body"]
    label3[4:7, 10:14] = ID["car window"]
    label3[12:16, 8:12] = ID["car wheel"]
    label3[12:16, 18:22] = ID["car wheel"]
    return base, {"2008_000001": label1, "2008_000003": label3}


def test_merge_table_is_consistent():
    assert len(PASCAL_PART_MERGE_TABLE) == 16
    assert not set(PASCAL_PART_MERGE_TABLE) & set(PASCAL_PART_EXCLUDED_OBJECTS)
    assert len(set(PASCAL_PART_CLASSES)) == len(PASCAL_PART_CLASSES) == BG
    assert merged_part_id("cat", "lfpa") == ID["cat leg"]
    assert merged_part_id("horse", "rbho") == ID["horse leg"]
    assert merged_part_id("person", "hair") == ID["person head"]
    assert merged_part_id("car", "door_3") == merged_part_id("car", "fliplate") == ID["car body"]
    assert merged_part_id("train", "cleftside_2") == ID["train coach"]
    assert merged_part_id("cat", "whisker") is None and merged_part_id("sofa", "head") is None


def test_fixture_mat_has_the_documented_structure(tmp_path):
    make_pascal_part(str(tmp_path))
    mat = str(tmp_path / "PASCAL-Part" / "Annotations_Part" / "2008_000003.mat")
    a = scipy.io.loadmat(mat)["anno"][0][0]
    assert a[0][0] == "2008_000003"
    person, car = a[1][0]
    assert person[0][0] == "person" and person[1][0][0] == 15 and person[2].shape == (16, 24)
    assert person[3].size == 0  # no parts
    assert car[0][0] == "car" and car[1][0][0] == 7
    parts = car[3][0]
    assert [p[0][0] for p in parts] == ["door_1", "window_1", "wheel_1", "wheel_2"]
    assert parts[1][1].shape == (16, 24) and parts[1][1].sum() == 12


def test_convert_register_and_resume(tmp_path, capsys):
    root = str(tmp_path)
    base, expected_labels = make_pascal_part(root)
    script = _load_script()
    summaries = script.main(["--root", base])
    out = capsys.readouterr().out
    assert "PASCAL-Part train" in out and "Part instances per class" in out

    train, val = summaries["train"], summaries["val"]
    assert train["images"] == 1 and val["images"] == 1
    assert train["images dropped: no part annotation of the 16 classes"] == 1
    assert val["images dropped: no Annotations_Part .mat"] == 1
    assert train["parts not in the merge table (pixels ignored): cat/whisker"] == 1
    assert train["part fragments below --min-area (no box, pixels kept)"] == 1  # the tail
    assert train["objects of classes without parts (background): chair"] == 1
    assert val["objects without part annotations (pixels ignored)"] == 1  # the person
    assert train["part instances: cat leg"] == 2 and val["part instances: car wheel"] == 2

    for name, label in expected_labels.items():
        split = "train" if name == "2008_000001" else "val"
        got = np.array(Image.open(os.path.join(base, "parts", "labels", split, name + ".png")))
        np.testing.assert_array_equal(got, label)

    register_all_pascal_part(root, name_prefix="pp_fixture")
    meta = MetadataCatalog.get("pp_fixture_val")
    assert meta.stuff_classes == PASCAL_PART_CLASSES + ["background"]
    assert meta.background_id == BG and meta.ignore_label == 255
    (rec,) = DatasetCatalog.get("pp_fixture_train")
    assert rec["file_name"] == os.path.join(
        base, "VOCdevkit", "VOC2010", "JPEGImages", "2008_000001.jpg"
    )
    assert (rec["height"], rec["width"]) == (20, 30)
    boxes = sorted((a["category_id"], tuple(a["bbox"])) for a in rec["annotations"])
    assert boxes == sorted(
        [
            (ID["cat head"], (2.0, 2.0, 8.0, 6.0)),
            (ID["cat torso"], (2.0, 8.0, 24.0, 6.0)),
            (ID["cat leg"], (3.0, 14.0, 4.0, 4.0)),
            (ID["cat leg"], (15.0, 14.0, 4.0, 4.0)),
        ]
    )
    assert all(isinstance(a["segmentation"], dict) for a in rec["annotations"])  # RLE
    (rec3,) = DatasetCatalog.get("pp_fixture_val")
    boxes3 = sorted((a["category_id"], tuple(a["bbox"])) for a in rec3["annotations"])
    assert boxes3 == sorted(
        [
            (ID["car body"], (8.0, 4.0, 16.0, 6.0)),
            (ID["car window"], (10.0, 4.0, 4.0, 3.0)),
            (ID["car wheel"], (8.0, 12.0, 4.0, 4.0)),
            (ID["car wheel"], (18.0, 12.0, 4.0, 4.0)),
        ]
    )

    # Resume: a rerun converts nothing again and writes the same JSON; a lost PNG is redone.
    json_file = os.path.join(base, "parts", "train.json")
    with open(json_file) as f:
        first = json.load(f)
    os.remove(os.path.join(base, "parts", "labels", "val", "2008_000003.png"))
    again = script.main(["--root", base])
    assert again["train"]["images resumed from a previous run"] == 2
    assert again["val"]["images resumed from a previous run"] == 1  # the .mat-less one
    assert os.path.isfile(os.path.join(base, "parts", "labels", "val", "2008_000003.png"))
    with open(json_file) as f:
        assert json.load(f) == first


def test_missing_conversion_output_points_to_readme(tmp_path):
    register_all_pascal_part(str(tmp_path), name_prefix="pp_missing_fixture")
    with pytest.raises(FileNotFoundError, match="datasets/README.md"):
        DatasetCatalog.get("pp_missing_fixture_val")
