"""The synthetic part dataset: determinism, exact PartImageNet format, loading, occlusion."""

import filecmp
import importlib.util
import json
import os

import wps_sam  # noqa: F401  isort:skip  (compatibility layer before detectron2)
import numpy as np
import pycocotools.mask as mask_util
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode
from PIL import Image

from wps_sam.data import synthetic_parts_classes as registered_classes
from wps_sam.data.datasets.register_partimagenet import (
    load_partimagenet_json,
    register_partimagenet_style_split,
)
from wps_sam.data.datasets.register_synthetic_parts import (
    SyntheticPartsMissingError,
    SyntheticPartsStaleError,
    register_all_synthetic_parts,
)
from wps_sam.data.datasets.register_synthetic_parts import (
    synthetic_split_paths as registered_split_paths,
)
from wps_sam.synthetic import parts
from wps_sam.synthetic.part_objects import OBJECT_KINDS, build_object
from wps_sam.synthetic.parts import (
    SYNTHETIC_PART_CLASSES,
    generate_synthetic_parts,
    image_annotations,
    render_synthetic_image,
    synthetic_split_paths,
)

C = len(SYNTHETIC_PART_CLASSES)
NUM_IMAGES = 10
SIZE = 128


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("synthetic_parts"))
    summary = generate_synthetic_parts(root, "val", NUM_IMAGES, SIZE, seed=3, show_progress=False)
    return root, summary


def _split_files(root, split):
    paths = synthetic_split_paths(root, split)
    files = [os.path.join(paths["image_root"], f) for f in sorted(os.listdir(paths["image_root"]))]
    files += [
        os.path.join(paths["sem_seg_root"], f) for f in sorted(os.listdir(paths["sem_seg_root"]))
    ]
    return files


def test_class_list():
    assert len(SYNTHETIC_PART_CLASSES) == C == 20 and len(set(SYNTHETIC_PART_CLASSES)) == C
    assert len(OBJECT_KINDS) == 6
    for kind in OBJECT_KINDS:
        n = sum(name.startswith(kind + " ") for name in SYNTHETIC_PART_CLASSES)
        assert 2 <= n <= 5, (kind, n)
    assert SYNTHETIC_PART_CLASSES[:2] == ["House Roof", "House Wall"]


def test_objects_are_normalized_and_use_their_own_parts():
    rng = np.random.default_rng(0)
    for kind in OBJECT_KINDS:
        for _ in range(5):
            pieces = build_object(rng, kind)
            pts = np.concatenate([p for piece in pieces for p in piece.polygons])
            extent = pts.max(axis=0) - pts.min(axis=0)
            assert extent.max() == pytest.approx(1.0)
            np.testing.assert_allclose((pts.max(axis=0) + pts.min(axis=0)) / 2, 0, atol=1e-9)
            assert all(SYNTHETIC_PART_CLASSES[p.class_id].startswith(kind) for p in pieces)


def test_deterministic_and_independent_of_workers(synth, tmp_path):
    root, _ = synth
    again = str(tmp_path / "again")
    generate_synthetic_parts(
        again, "val", NUM_IMAGES, SIZE, seed=3, num_workers=2, show_progress=False
    )
    a, b = _split_files(root, "val"), _split_files(again, "val")
    assert [os.path.basename(f) for f in a] == [os.path.basename(f) for f in b]
    assert len(a) == 2 * NUM_IMAGES + 1  # JPEGs, PNGs and the JSON
    for fa, fb in zip(a, b):
        assert filecmp.cmp(fa, fb, shallow=False), f"{fa} differs from {fb}"

    # Another seed or another split gives other images.
    other = str(tmp_path / "other")
    generate_synthetic_parts(other, "val", 2, SIZE, seed=4, show_progress=False)
    generate_synthetic_parts(other, "test", 2, SIZE, seed=3, show_progress=False)
    first = os.path.join(synthetic_split_paths(root, "val")["sem_seg_root"], "val_000000.png")
    for split in ("val", "test"):
        png = os.path.join(
            synthetic_split_paths(other, split)["sem_seg_root"], f"{split}_000000.png"
        )
        assert not np.array_equal(np.array(Image.open(first)), np.array(Image.open(png)))


def test_partimagenet_format(synth):
    root, summary = synth
    paths = synthetic_split_paths(root, "val")
    assert paths["json_file"] == os.path.join(root, "annotations", "val", "val.json")
    with open(paths["json_file"]) as f:
        data = json.load(f)
    assert data["categories"] == [
        {"id": i, "name": n, "supercategory": n.split(" ")[0]}
        for i, n in enumerate(SYNTHETIC_PART_CLASSES)
    ]
    assert [im["id"] for im in data["images"]] == list(range(1, NUM_IMAGES + 1))
    ann_ids = [a["id"] for a in data["annotations"]]
    assert ann_ids == list(range(1, len(ann_ids) + 1))
    assert summary["num_annotations"] == len(ann_ids) > 0

    anns_per_image = {}
    for ann in data["annotations"]:
        assert set(ann) == {
            "id",
            "image_id",
            "category_id",
            "segmentation",
            "bbox",
            "area",
            "iscrowd",
        }
        assert 0 <= ann["category_id"] < C and ann["iscrowd"] == 0
        anns_per_image.setdefault(ann["image_id"], []).append(ann)

    for im in data["images"]:
        assert set(im) == {"id", "file_name", "height", "width"}
        assert (im["height"], im["width"]) == (SIZE, SIZE)
        stem, ext = os.path.splitext(im["file_name"])
        assert ext == ".JPEG" and stem.startswith("val_")
        rgb = Image.open(os.path.join(paths["image_root"], im["file_name"]))
        assert rgb.format == "JPEG" and rgb.mode == "RGB" and rgb.size == (SIZE, SIZE)
        png = Image.open(os.path.join(paths["sem_seg_root"], stem + ".png"))
        assert png.mode == "L"
        label = np.array(png)
        assert label.dtype == np.uint8 and label.shape == (SIZE, SIZE)
        assert set(np.unique(label).tolist()) <= set(range(C + 1))

        anns = anns_per_image.get(im["id"], [])
        # Part instances partition the visible part pixels.
        assert sum(a["area"] for a in anns) == np.count_nonzero(label != C)
        # Categories in the label map == categories annotated.
        assert {a["category_id"] for a in anns} == set(np.unique(label).tolist()) - {C}
        covered = np.zeros_like(label, dtype=bool)
        for a in anns:
            x, y, w, h = (int(v) for v in a["bbox"])
            assert a["bbox"] == [float(v) for v in (x, y, w, h)] and w > 0 and h > 0
            inside = label[y : y + h, x : x + w] == a["category_id"]
            # The box is tight around visible pixels of its class, which cover its area.
            assert (
                inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
            )
            assert 0 < a["area"] <= inside.sum()
            covered[y : y + h, x : x + w] |= inside
            # Polygons: >= 3 points each, inside the box, and close to the visible mask.
            assert a["segmentation"] and all(
                len(p) >= 6 and len(p) % 2 == 0 for p in a["segmentation"]
            )
            xy = np.concatenate([np.reshape(p, (-1, 2)) for p in a["segmentation"]])
            assert (xy >= [x - 0.5, y - 0.5]).all() and (xy <= [x + w - 0.5, y + h - 0.5]).all()
            if a["area"] >= 60:
                rles = mask_util.frPyObjects(a["segmentation"], SIZE, SIZE)
                poly = mask_util.decode(mask_util.merge(rles)).astype(bool)[y : y + h, x : x + w]
                iou = (poly & inside).sum() / (poly | inside).sum()
                assert iou > 0.5, (im["file_name"], a["category_id"], iou)
        assert (covered == (label != C)).all()


def test_render_label_map_matches_instances():
    for i in range(6):
        out = render_synthetic_image(np.random.default_rng([7, i]), (80, 96))
        label, inst, classes = out["label"], out["instance_map"], out["instance_classes"]
        assert out["image"].shape == (80, 96, 3) and out["image"].dtype == np.uint8
        assert label.shape == inst.shape == (80, 96)
        lut = np.array(classes + [C], dtype=np.uint8)  # index -1 -> background
        np.testing.assert_array_equal(label, lut[inst])


def test_occlusion_later_object_hides_earlier(monkeypatch):
    """A small fish drawn first, then a big house on top: the fish is gone from labels and JSON."""
    size = 128
    center = np.array([64.0, 64.0])

    def two_objects(rng, height, width):
        return [("Fish", 12.0, center, 0.0, 1.0), ("House", 220.0, center, 0.0, 1.0)]

    monkeypatch.setattr(parts, "_object_placements", two_objects)
    out = render_synthetic_image(np.random.default_rng(0), size)
    fish = [i for i, n in enumerate(SYNTHETIC_PART_CLASSES) if n.startswith("Fish")]
    drawn_fish = [k for k, c in enumerate(out["instance_classes"]) if c in fish]
    assert drawn_fish, "the fish must have been drawn"
    assert not np.isin(out["label"], fish).any()
    anns, stats = image_annotations(out["instance_map"], out["instance_classes"])
    assert all(a["category_id"] not in fish for a in anns)
    assert stats["occluded_instances"] >= len(drawn_fish)
    # The house's parts are what is visible at the centre.
    assert SYNTHETIC_PART_CLASSES[int(out["label"][64, 64])].startswith("House")

    # Partial occlusion: the same fish (same seed) alone, then with a house over its right side.
    monkeypatch.setattr(parts, "random_distractor_mask", lambda rng, h, w, **kw: np.zeros((h, w)))
    fish_alone = [("Fish", 80.0, center, 0.0, 1.0)]
    with_house = fish_alone + [("House", 90.0, center + [50.0, 0.0], 0.0, 1.0)]
    renders = []
    for placements in (fish_alone, with_house):
        monkeypatch.setattr(parts, "_object_placements", lambda rng, h, w, p=placements: p)
        renders.append(render_synthetic_image(np.random.default_rng(1), size))
    body = SYNTHETIC_PART_CLASSES.index("Fish Body")
    full, occluded = (r["label"] == body for r in renders)
    assert occluded.sum() > 0 and (occluded & ~full).sum() == 0 and occluded.sum() < full.sum()
    hidden = full & ~occluded
    assert all(
        SYNTHETIC_PART_CLASSES[c].startswith("House")
        for c in np.unique(renders[1]["label"][hidden])
    )
    anns, _ = image_annotations(renders[1]["instance_map"], renders[1]["instance_classes"])
    (fish_body,) = [a for a in anns if a["category_id"] == body]
    assert fish_body["area"] == occluded.sum()
    ys, xs = np.nonzero(occluded)
    assert fish_body["bbox"] == [
        xs.min(),
        ys.min(),
        xs.max() - xs.min() + 1,
        ys.max() - ys.min() + 1,
    ]


def test_load_through_partimagenet_loader_and_catalog(synth):
    root, _ = synth
    paths = synthetic_split_paths(root, "val")
    dicts = load_partimagenet_json(paths["json_file"], paths["image_root"], paths["sem_seg_root"])
    assert len(dicts) == NUM_IMAGES
    name = "synthetic_parts_fixture_val"
    register_partimagenet_style_split(
        name, paths["image_root"], paths["json_file"], paths["sem_seg_root"], SYNTHETIC_PART_CLASSES
    )
    from_catalog = DatasetCatalog.get(name)
    assert [d["file_name"] for d in from_catalog] == [d["file_name"] for d in dicts]
    for d in from_catalog:
        assert os.path.isfile(d["file_name"]) and os.path.isfile(d["sem_seg_file_name"])
        assert d["annotations"]
        for a in d["annotations"]:
            assert a["bbox_mode"] == BoxMode.XYWH_ABS and 0 <= a["category_id"] < C
            assert a["segmentation"]  # no polygon lost
    meta = MetadataCatalog.get(name)
    assert meta.stuff_classes == SYNTHETIC_PART_CLASSES + ["background"]
    assert meta.thing_classes == SYNTHETIC_PART_CLASSES and meta.background_id == C


def test_builtin_registration_has_no_side_effects(tmp_path):
    root = os.getenv("DETECTRON2_DATASETS", "datasets")
    for split in ("train", "val", "test"):
        meta = MetadataCatalog.get(f"synthetic_parts_{split}")
        assert meta.json_file == os.path.join(
            root, "synthetic_parts", "annotations", split, f"{split}.json"
        )
        assert meta.stuff_classes == SYNTHETIC_PART_CLASSES + ["background"]
        assert meta.ignore_label == 255 and meta.evaluator_type == "sem_seg"

    register_all_synthetic_parts(str(tmp_path), name_prefix="synthetic_parts_lazy")
    assert os.listdir(tmp_path) == []  # registration reads and writes nothing
    # Loading a split that was never generated names the command that generates it, and
    # generates nothing either.
    with pytest.raises(SyntheticPartsMissingError) as e:
        DatasetCatalog.get("synthetic_parts_lazy_val")
    assert f"python datasets/prepare_synthetic_parts.py --root {tmp_path} --splits val" in str(
        e.value
    )
    assert isinstance(e.value, FileNotFoundError)
    with pytest.raises(SyntheticPartsMissingError, match="--splits train"):
        DatasetCatalog.get("synthetic_parts_lazy_train_320")
    assert os.listdir(tmp_path) == []

    generate_synthetic_parts(str(tmp_path), "val", 3, 64, seed=2, show_progress=False)
    dicts = DatasetCatalog.get("synthetic_parts_lazy_val")
    assert len(dicts) == 3 and (dicts[0]["height"], dicts[0]["width"]) == (64, 64)

    # A split written by an older generator is refused (its scores would not be the
    # benchmark's), with the command that draws it again.
    json_file = synthetic_split_paths(str(tmp_path), "val")["json_file"]
    with open(json_file) as f:
        coco = json.load(f)
    coco["info"]["version"] = parts.GENERATOR_VERSION - 1
    with open(json_file, "w") as f:
        json.dump(coco, f)
    with pytest.raises(SyntheticPartsStaleError, match="--splits val") as e:
        DatasetCatalog.get("synthetic_parts_lazy_val")
    assert f"version {parts.GENERATOR_VERSION - 1}" in str(e.value)
    for split in ("train", "val", "test"):
        DatasetCatalog.remove(f"synthetic_parts_lazy_{split}")
    DatasetCatalog.remove("synthetic_parts_lazy_train_320")


def test_registration_tables_are_the_generators():
    """The registration's class table and split layout (data/, no generator import) are the
    generator's."""
    assert registered_classes.SYNTHETIC_PART_CLASSES == parts.SYNTHETIC_PART_CLASSES
    assert registered_classes.SYNTHETIC_PART_SUPERCATEGORIES == list(
        parts.SYNTHETIC_PART_SUPERCATEGORIES
    )
    for split in ("train", "val", "test"):
        assert registered_split_paths("r", split) == synthetic_split_paths("r", split)


def _prepare_script():
    path = os.path.join(os.path.dirname(__file__), "..", "datasets", "prepare_synthetic_parts.py")
    spec = importlib.util.spec_from_file_location("prepare_synthetic_parts", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_prepare_script(tmp_path, capsys):
    script = _prepare_script()
    args = ["--root", str(tmp_path), "--splits", "val", "--num-val", "2", "--image-size", "64"]
    assert script.main(args + ["--workers", "0"]) == 0
    out = capsys.readouterr().out
    assert "House Roof" in out and "Generated 2 images" in out
    with open(synthetic_split_paths(str(tmp_path), "val")["json_file"]) as f:
        assert json.load(f)["info"]["image_size"] == 64
    assert script.main(args) == 0  # exists: skipped
    assert "skipped" in capsys.readouterr().out

    # A split of an older generator is drawn again, with the settings it was made with (not the
    # command line's defaults).
    json_file = synthetic_split_paths(str(tmp_path), "val")["json_file"]
    with open(json_file) as f:
        coco = json.load(f)
    coco["info"]["version"] = parts.GENERATOR_VERSION - 1
    coco["images"] = coco["images"][:1]
    with open(json_file, "w") as f:
        json.dump(coco, f)
    assert script.main(["--root", str(tmp_path), "--splits", "val", "--workers", "0"]) == 0
    assert "regenerating it with the settings it was made with" in capsys.readouterr().out
    with open(json_file) as f:
        coco = json.load(f)
    assert coco["info"]["version"] == parts.GENERATOR_VERSION
    assert coco["info"]["image_size"] == 64 and len(coco["images"]) == 2
