"""Bad input: a clear error saying what is wrong and what to do, or a counted and reported skip.

One test (or parametrised group) per row of docs/TROUBLESHOOTING.md, on a tiny random SAM
(configs/tests/tiny_random_sam.yaml) and tiny images, on the CPU.
"""

import contextlib
import io
import json
import logging
import os
import pickle

import wps_sam  # noqa: F401  isort:skip  (compatibility layer before detectron2)
import numpy as np
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import DatasetCatalog, build_detection_test_loader
from detectron2.data.detection_utils import SizeMismatchError
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage
from PIL import Image

from wps_sam.cli_config import load_wps_sam_cfg
from wps_sam.data import WPSSAMDatasetMapper
from wps_sam.data.datasets.register_partimagenet import (
    DatasetFilesMissingError,
    register_partimagenet_style_split,
)
from wps_sam.engine import CheckpointFileError, Trainer, WPSSAMCheckpointer, WPSSAMPredictor
from wps_sam.modeling import SamCheckpointError, build_sam
from wps_sam.modeling.sam_builder import sam_architecture_from_cfg

from tiny_wps_sam import NUM_CLASSES, REPO, save_tiny_sam_checkpoint, tiny_cfg

CLASSES = ["thing head", "thing body", "thing tail"]


# -------------------------------------------------------------------------------------------------
# Helpers
# -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sam_checkpoint(tmp_path_factory):
    """A random tiny SAM saved like an official checkpoint (a plain state dict)."""
    return save_tiny_sam_checkpoint(tmp_path_factory.mktemp("sam"))


@pytest.fixture(scope="module")
def predictor(sam_checkpoint):
    return WPSSAMPredictor(tiny_cfg(**{"MODEL.SAM.CHECKPOINT": sam_checkpoint}))


@pytest.fixture(scope="module")
def weights(sam_checkpoint, tmp_path_factory):
    """A WPS-SAM checkpoint (prompter only) of the tiny config, written by detectron2."""
    torch.manual_seed(2)
    model = build_model(tiny_cfg(**{"MODEL.SAM.CHECKPOINT": sam_checkpoint}))
    folder = tmp_path_factory.mktemp("weights")
    DetectionCheckpointer(model, save_dir=str(folder)).save("model_tiny")
    return str(folder / "model_tiny.pth")


class _RunsCode:
    """Unpickling this calls ``open(marker, "w")``: what a malicious checkpoint would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@contextlib.contextmanager
def captured_log(name):
    """Collect the records of logger ``name`` (detectron2's setup_logger may stop propagation)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    log = logging.getLogger(name)
    old_level = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)


def write_dataset(root, images, corrupt=(), labels=None):
    """A split in the PartImageNet layout under ``root`` (images/, labels/, data.json).

    Args:
        images: list of (stem, h, w, annotations) with COCO annotation dicts (``image_id`` set
            here unless given).
        corrupt: stems whose JPEG is replaced by its first 100 bytes.
        labels: stem -> (h, w) of its label PNG when it must differ from the image.
    Returns:
        (image_root, json_file, sem_seg_root)
    """
    image_root, sem_seg_root = os.path.join(root, "images"), os.path.join(root, "labels")
    os.makedirs(image_root, exist_ok=True)
    os.makedirs(sem_seg_root, exist_ok=True)
    rng = np.random.default_rng(0)
    data = {"images": [], "annotations": [], "categories": []}
    for i, (stem, h, w, anns) in enumerate(images):
        path = os.path.join(image_root, stem + ".jpg")
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path, quality=90)
        if stem in corrupt:
            with open(path, "rb") as f:
                head = f.read(100)
            with open(path, "wb") as f:
                f.write(head)
        lh, lw = (labels or {}).get(stem, (h, w))
        Image.fromarray(np.full((lh, lw), NUM_CLASSES, np.uint8)).save(
            os.path.join(sem_seg_root, stem + ".png")
        )
        data["images"].append({"id": i, "file_name": stem + ".jpg", "height": h, "width": w})
        for a in anns:
            data["annotations"].append({"id": len(data["annotations"]), "image_id": i, **a})
    data["categories"] = [{"id": i, "name": n} for i, n in enumerate(CLASSES)]
    json_file = os.path.join(root, "data.json")
    with open(json_file, "w") as f:
        json.dump(data, f)
    return image_root, json_file, sem_seg_root


def register(name, paths):
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
    image_root, json_file, sem_seg_root = paths
    register_partimagenet_style_split(
        name,
        image_root=image_root,
        json_file=json_file,
        sem_seg_root=sem_seg_root,
        class_names=CLASSES,
    )
    return name


def box(x, y, w, h, cat=0, **extra):
    return {"bbox": [x, y, w, h], "category_id": cat, "iscrowd": 0, "area": w * h, **extra}


def gray_image(h=24, w=32):
    return np.random.default_rng(3).integers(0, 255, (h, w), dtype=np.uint8)


# -------------------------------------------------------------------------------------------------
# Checkpoints: SAM's (MODEL.SAM.CHECKPOINT) and WPS-SAM's (MODEL.WEIGHTS)
# -------------------------------------------------------------------------------------------------
def test_sam_checkpoint_missing(tmp_path):
    missing = str(tmp_path / "sam_vit_b.pth")
    with pytest.raises(SamCheckpointError, match="not found.*MODEL.SAM.CHECKPOINT"):
        build_model(tiny_cfg(**{"MODEL.SAM.CHECKPOINT": missing}))


def test_sam_checkpoint_truncated(sam_checkpoint, tmp_path):
    truncated = tmp_path / "half.pth"
    data = open(sam_checkpoint, "rb").read()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(SamCheckpointError, match="half.pth.*re-download it if it is truncated"):
        build_model(tiny_cfg(**{"MODEL.SAM.CHECKPOINT": str(truncated)}))


def test_sam_checkpoint_not_a_checkpoint(tmp_path):
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(SamCheckpointError, match="Could not read SAM checkpoint.*notes.pth"):
        build_model(tiny_cfg(**{"MODEL.SAM.CHECKPOINT": str(text)}))
    other = tmp_path / "other_state.pth"
    torch.save({"linear.weight": torch.zeros(2, 2)}, other)
    with pytest.raises(SamCheckpointError, match="is not a SAM state dict"):
        build_model(tiny_cfg(**{"MODEL.SAM.CHECKPOINT": str(other)}))


def test_sam_checkpoint_of_another_variant(tmp_path):
    other = tmp_path / "wider.pth"
    arch = sam_architecture_from_cfg(tiny_cfg(**{"MODEL.SAM.ENCODER_EMBED_DIM": 48}))
    torch.save(build_sam(arch).state_dict(), other)
    with pytest.raises(SamCheckpointError, match="encoder dim 48.*encoder dim 32.*VARIANT"):
        build_model(tiny_cfg(**{"MODEL.SAM.CHECKPOINT": str(other)}))


def test_sam_checkpoint_with_pickled_code_is_refused_not_run(tmp_path):
    marker = tmp_path / "code_ran"
    evil = tmp_path / "evil_sam.pth"
    torch.save({"image_encoder.x": torch.zeros(1), "payload": _RunsCode(str(marker))}, evil)
    with pytest.raises(SamCheckpointError, match="Refused to load SAM checkpoint .*evil_sam.pth"):
        build_model(tiny_cfg(**{"MODEL.SAM.CHECKPOINT": str(evil)}))
    assert not marker.exists()


def test_weights_missing(sam_checkpoint, tmp_path):
    cfg = tiny_cfg(
        **{"MODEL.SAM.CHECKPOINT": sam_checkpoint, "MODEL.WEIGHTS": str(tmp_path / "model.pth")}
    )
    with pytest.raises(CheckpointFileError, match="Checkpoint not found.*MODEL.WEIGHTS"):
        WPSSAMPredictor(cfg)


def test_weights_truncated(sam_checkpoint, weights, tmp_path):
    truncated = tmp_path / "model_cut.pth"
    data = open(weights, "rb").read()
    truncated.write_bytes(data[: len(data) // 3])
    cfg = tiny_cfg(**{"MODEL.SAM.CHECKPOINT": sam_checkpoint, "MODEL.WEIGHTS": str(truncated)})
    with pytest.raises(CheckpointFileError, match="model_cut.pth.*truncated"):
        WPSSAMPredictor(cfg)


def test_weights_not_a_checkpoint(sam_checkpoint, tmp_path):
    text = tmp_path / "readme.pth"
    text.write_text("hello")
    listed = tmp_path / "list.pth"
    torch.save([1, 2, 3], listed)
    cases = [
        (text, "readme.pth.*not a file written by torch.save"),
        (listed, "list.pth.*holds a list, not a checkpoint"),
    ]
    for path, message in cases:
        cfg = tiny_cfg(**{"MODEL.SAM.CHECKPOINT": sam_checkpoint, "MODEL.WEIGHTS": str(path)})
        with pytest.raises(CheckpointFileError, match=message):
            WPSSAMPredictor(cfg)


def test_weights_with_pickled_code_are_refused_not_run(sam_checkpoint, weights, tmp_path):
    marker = tmp_path / "code_ran"
    evil = tmp_path / "evil_model.pth"
    checkpoint = torch.load(weights, weights_only=True)
    checkpoint["extra"] = _RunsCode(str(marker))
    torch.save(checkpoint, evil)
    pkl = tmp_path / "model.pkl"
    with open(pkl, "wb") as f:
        pickle.dump({"model": {}, "x": _RunsCode(str(marker))}, f)
    for path, message in ((evil, "Refused to load.*evil_model.pth"), (pkl, "model.pkl.*refused")):
        cfg = tiny_cfg(**{"MODEL.SAM.CHECKPOINT": sam_checkpoint, "MODEL.WEIGHTS": str(path)})
        with pytest.raises(CheckpointFileError, match=message):
            WPSSAMPredictor(cfg)
    assert not marker.exists()


def test_sam_state_dict_given_as_weights_is_refused(sam_checkpoint):
    """Through detectron2's own DetectionCheckpointer too (the trainer's): the model refuses."""
    model = build_model(tiny_cfg(**{"MODEL.SAM.CHECKPOINT": sam_checkpoint}))
    with pytest.raises(RuntimeError, match="SAM state dict.*MODEL.SAM.CHECKPOINT"):
        DetectionCheckpointer(model).load(sam_checkpoint)


def test_weights_of_another_config_are_refused(sam_checkpoint, weights):
    model = build_model(
        tiny_cfg(**{"MODEL.SAM.CHECKPOINT": sam_checkpoint, "MODEL.WPS_SAM.HIDDEN_DIM": 32})
    )
    with pytest.raises(RuntimeError, match="another MODEL.WPS_SAM config"):
        WPSSAMCheckpointer(model).load(weights)
    # The right config loads it, and the prompter then equals the saved one.
    model = build_model(tiny_cfg(**{"MODEL.SAM.CHECKPOINT": sam_checkpoint}))
    WPSSAMCheckpointer(model).load(weights)
    saved = torch.load(weights, weights_only=True)["model"]
    for k, v in model.prompter.state_dict().items():
        assert torch.equal(v, saved["prompter." + k]), k


# -------------------------------------------------------------------------------------------------
# Configs
# -------------------------------------------------------------------------------------------------
def test_config_unknown_key():
    with pytest.raises((KeyError, AssertionError), match="MODEL.WPS_SAM.NUM_QUERYS"):
        load_wps_sam_cfg(
            os.path.join(REPO, "configs/tests/tiny_random_sam.yaml"),
            ["MODEL.WPS_SAM.NUM_QUERYS", 3],
        )


def test_config_unknown_meta_architecture():
    with pytest.raises(KeyError, match="No object named 'WPSSam' found in 'META_ARCH' registry"):
        build_model(tiny_cfg(**{"MODEL.META_ARCHITECTURE": "WPSSam"}))


@pytest.mark.parametrize(
    "key, value, message",
    [
        (
            "MODEL.WPS_SAM.HIDDEN_DIM",
            65,
            "HIDDEN_DIM=65 must be a multiple of MODEL.WPS_SAM.NHEADS",
        ),
        ("MODEL.WPS_SAM.NUM_QUERIES", 0, "NUM_QUERIES=0 must be >= 1"),
        ("MODEL.SAM.IMAGE_SIZE", 0, "MODEL.SAM.IMAGE_SIZE=0 must be >= 1"),
        ("MODEL.SAM.IMAGE_SIZE", 100, "IMAGE_SIZE=100 must be a multiple of MODEL.SAM.PATCH_SIZE"),
        ("MODEL.SAM.PROMPT_EMBED_DIM", 100, "PROMPT_EMBED_DIM=100 must be a multiple of SAM"),
        ("MODEL.SAM.ENCODER_NUM_HEADS", 3, "ENCODER_EMBED_DIM=32 must be a multiple of"),
        ("MODEL.WPS_SAM.DEC_LAYERS", 0, "DEC_LAYERS=0 must be >= 1"),
    ],
)
def test_config_impossible_sizes(key, value, message):
    with pytest.raises(ValueError, match="Impossible sizes in the config: .*" + message):
        build_model(tiny_cfg(**{key: value}))


def test_config_unregistered_dataset():
    with pytest.raises(KeyError, match=r"\['partimagenet_trian'\].*not registered"):
        load_wps_sam_cfg(
            os.path.join(REPO, "configs/tests/tiny_random_sam.yaml"),
            ["DATASETS.TRAIN", "('partimagenet_trian',)", "DATASETS.TEST", "()"],
        )


def test_config_class_count_disagrees_with_dataset():
    with pytest.raises(ValueError, match="NUM_CLASSES=3 but the datasets.*have 40 part classes"):
        load_wps_sam_cfg(
            os.path.join(REPO, "configs/tests/tiny_random_sam.yaml"),
            ["DATASETS.TRAIN", "('partimagenet_train',)", "DATASETS.TEST", "()"]
            + ["MODEL.WPS_SAM.NUM_CLASSES", 3],
        )


# -------------------------------------------------------------------------------------------------
# Images at inference, through the predictor (DefaultPredictor) and the model
# -------------------------------------------------------------------------------------------------
def _same_output(a, b):
    """The same pixels given in another container: same label map and scores, within float noise
    (another memory layout may select other kernels), on at least 99.9% of the pixels."""
    la, lb = a["sem_seg"].argmax(0), b["sem_seg"].argmax(0)
    assert (la == lb).float().mean() >= 0.999
    close = (a["sem_seg"] - b["sem_seg"]).abs().amax(0) <= 1e-5
    assert close.float().mean() >= 0.999


def test_grayscale_arrays_are_segmented_as_gray_rgb(predictor):
    gray = gray_image()
    reference = predictor(np.repeat(gray[:, :, None], 3, axis=2))
    _same_output(predictor(gray), reference)  # detectron2's DefaultPredictor: IndexError
    _same_output(predictor(gray[:, :, None]), reference)
    assert reference["sem_seg"].shape == (NUM_CLASSES + 1, 24, 32)


def test_rgba_and_pil_images(predictor):
    bgr = np.random.default_rng(4).integers(0, 255, (20, 28, 3), dtype=np.uint8)
    reference = predictor(bgr)
    bgra = np.concatenate([bgr, np.full((20, 28, 1), 7, np.uint8)], axis=2)
    _same_output(predictor(bgra), reference)
    _same_output(predictor(Image.fromarray(bgr[:, :, ::-1].copy())), reference)  # PIL is RGB
    palette = Image.fromarray(bgr[:, :, 0]).convert("P")
    assert predictor(palette)["sem_seg"].shape[-2:] == (20, 28)


@pytest.mark.parametrize("shape", [(0, 0), (0, 0, 3), (0, 10, 3), (10, 0)])
def test_empty_image_is_refused(predictor, shape):
    with pytest.raises(ValueError, match="Empty image.*nothing to segment"):
        predictor(np.zeros(shape, np.uint8))


def test_unreadable_image_files_name_the_file(predictor, tmp_path):
    jpg = tmp_path / "photo.jpg"
    Image.fromarray(np.zeros((40, 40, 3), np.uint8) + 90).save(jpg)
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(jpg.read_bytes()[:200])
    text = tmp_path / "notes.jpg"
    text.write_text("these are notes, not a JPEG")
    with pytest.raises(OSError, match="cut.jpg.*truncated or not an image"):
        predictor(str(truncated))
    with pytest.raises(OSError, match="notes.jpg.*truncated or not an image"):
        predictor(str(text))
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        predictor(str(tmp_path / "missing.jpg"))
    assert predictor(str(jpg))["sem_seg"].shape[-2:] == (40, 40)


def test_exif_rotation_is_applied(predictor, tmp_path):
    pixels = np.random.default_rng(5).integers(0, 255, (20, 40, 3), dtype=np.uint8)
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    Image.fromarray(pixels).save(path, exif=exif.tobytes(), quality=95)
    out = predictor(str(path))
    assert out["sem_seg"].shape[-2:] == (40, 20)  # the displayed orientation
    assert predictor(Image.open(path))["sem_seg"].shape[-2:] == (40, 20)


def test_very_large_image_works_and_warns_about_memory(sam_checkpoint, caplog):
    predictor = WPSSAMPredictor(
        tiny_cfg(**{"MODEL.SAM.CHECKPOINT": sam_checkpoint}), large_output_bytes=10**8
    )
    image = np.random.default_rng(6).integers(0, 255, (3000, 2000, 3), dtype=np.uint8)
    with captured_log("wps_sam.engine.predictor") as log:
        out = predictor(image)
    assert out["sem_seg"].shape == (NUM_CLASSES + 1, 3000, 2000)
    assert "3000 x 2000 image" in log.getvalue() and "downscale" in log.getvalue()


def test_sixteen_bit_and_float_images(predictor, tmp_path):
    eight = np.random.default_rng(7).integers(0, 255, (16, 16), dtype=np.uint8)
    sixteen = eight.astype(np.uint16) * 257
    with pytest.raises(ValueError, match="outside 0..255.*16-bit"):
        predictor(sixteen)  # DefaultPredictor: a silently wrong segmentation
    path = tmp_path / "sixteen.png"
    Image.fromarray(sixteen).save(path)  # a 16-bit PNG file is scaled to 8 bits
    _same_output(predictor(str(path)), predictor(eight))
    with pytest.raises(ValueError, match=r"looks scaled to \[0, 1\].*\* 255"):
        predictor(eight.astype(np.float32) / 255)
    with pytest.raises(ValueError, match="NaN or infinite"):
        predictor(np.full((8, 8, 3), np.nan, np.float32))
    with pytest.raises(TypeError, match="not a torch tensor"):
        predictor(torch.zeros(8, 8, 3))


@pytest.mark.parametrize(
    "image, error, message",
    [
        (torch.zeros(20, 30, dtype=torch.uint8), ValueError, "2-D.*expand"),
        (torch.zeros(20, 30, 3, dtype=torch.uint8), ValueError, "channels-last.*permute"),
        (torch.zeros(4, 20, 30, dtype=torch.uint8), ValueError, "4 channels.*alpha"),
        (torch.zeros(3, 0, 0, dtype=torch.uint8), ValueError, "is empty"),
        (np.zeros((3, 20, 30), np.uint8), TypeError, "is a ndarray.*WPSSAMPredictor"),
    ],
)
def test_model_called_directly_with_a_bad_image(sam_checkpoint, image, error, message):
    model = build_model(tiny_cfg(**{"MODEL.SAM.CHECKPOINT": sam_checkpoint})).eval()
    with pytest.raises(error, match=r"batched_inputs\[0\]\['image'\].*" + message):
        model([{"image": image, "file_name": "x.jpg"}])


def test_model_called_with_a_bad_embedding_or_labels(sam_checkpoint):
    model = build_model(tiny_cfg(**{"MODEL.SAM.CHECKPOINT": sam_checkpoint})).eval()
    with pytest.raises(ValueError, match=r"image_embedding'\] is \(256, 4, 4\).*\(256, 8, 8\)"):
        model([{"image_embedding": torch.zeros(256, 4, 4), "height": 8, "width": 8}])
    inst = Instances((128, 128))
    inst.gt_boxes = Boxes(torch.tensor([[1.0, 1.0, 20.0, 20.0]]))
    inst.gt_classes = torch.tensor([NUM_CLASSES])
    model.train()
    with pytest.raises(ValueError, match=r"gt_classes holds \[3\], outside .* 0..2"):
        model([{"image": torch.zeros(3, 128, 128, dtype=torch.uint8), "instances": inst}])
    with pytest.raises(KeyError, match="Training needs 'instances'"):
        model([{"image": torch.zeros(3, 128, 128, dtype=torch.uint8)}])


# -------------------------------------------------------------------------------------------------
# Images inside a training or evaluation set: these stop the run, naming the file
# -------------------------------------------------------------------------------------------------
def test_dataset_with_missing_image_files_stops_before_training(tmp_path):
    paths = write_dataset(tmp_path, [("a", 20, 20, [box(2, 2, 8, 8)]), ("b", 20, 20, [])])
    os.remove(os.path.join(paths[0], "b.jpg"))
    name = register("bad_input_missing_image", paths)
    with pytest.raises(DatasetFilesMissingError, match=r"1 of the 2 images.*b\.jpg.*restore"):
        DatasetCatalog.get(name)


def _evaluation_batches(name, image_size=64):
    cfg = tiny_cfg(**{"MODEL.SAM.IMAGE_SIZE": image_size})
    loader = build_detection_test_loader(
        DatasetCatalog.get(name), mapper=WPSSAMDatasetMapper(cfg, is_train=False)
    )
    return list(loader)


def test_corrupt_image_in_a_dataset_stops_with_its_name(tmp_path):
    paths = write_dataset(
        tmp_path, [("good", 20, 20, [box(2, 2, 8, 8)]), ("broken", 20, 20, [])], corrupt=["broken"]
    )
    name = register("bad_input_corrupt_image", paths)
    with pytest.raises(OSError, match=r"Cannot read image .*broken\.jpg.*restore it"):
        _evaluation_batches(name)


def test_label_png_of_another_size_stops_with_both_names(tmp_path):
    paths = write_dataset(tmp_path, [("img", 20, 30, [box(2, 2, 8, 8)])], labels={"img": (30, 20)})
    name = register("bad_input_label_size", paths)
    with pytest.raises(ValueError, match=r"img\.png has shape \(30, 20\).*\(20, 30\).*img\.jpg"):
        _evaluation_batches(name)


def test_image_size_differs_from_the_json(tmp_path):
    paths = write_dataset(tmp_path, [("img", 20, 30, [box(2, 2, 8, 8)])])
    data = json.load(open(paths[1]))
    data["images"][0]["height"] = 21
    json.dump(data, open(paths[1], "w"))
    name = register("bad_input_json_size", paths)
    with pytest.raises(SizeMismatchError, match=r"img\.jpg.*got \(30, 20\), expect \(30, 21\)"):
        _evaluation_batches(name)


# -------------------------------------------------------------------------------------------------
# Annotations: dropped or kept, always counted and reported
# -------------------------------------------------------------------------------------------------
LOADER_LOG = "wps_sam.data.datasets.register_partimagenet"


def _load_with_log(tmp_path, name, images):
    register(name, write_dataset(tmp_path, images))
    with captured_log(LOADER_LOG) as log:
        dicts = DatasetCatalog.get(name)
    return dicts, log.getvalue()


def test_images_without_parts_are_kept_counted_and_train(tmp_path, sam_checkpoint):
    dicts, log = _load_with_log(
        tmp_path, "bad_input_no_parts", [("a", 20, 20, [box(2, 2, 8, 8)]), ("b", 20, 20, [])]
    )
    assert [len(d["annotations"]) for d in dicts] == [1, 0]
    assert "images without annotations (kept for evaluation): 1" in log
    # The model trains on a batch holding an image without parts: finite losses.
    model = build_model(tiny_cfg(**{"MODEL.SAM.CHECKPOINT": sam_checkpoint})).train()
    mapper = WPSSAMDatasetMapper(tiny_cfg(), is_train=True)
    with EventStorage():
        losses = model([mapper(d) for d in dicts])
    assert all(torch.isfinite(v) for v in losses.values())


def test_degenerate_polygons_are_dropped_alone_and_counted(tmp_path):
    bad = box(2, 2, 8, 8, segmentation=[[2, 2, 10, 2], [2, 2, 10, 2, 10, 10]])
    dicts, log = _load_with_log(tmp_path, "bad_input_polygons", [("a", 20, 20, [bad])])
    (ann,) = dicts[0]["annotations"]
    assert ann["segmentation"] == [[2, 2, 10, 2, 10, 10]] and ann["bbox"] == [2, 2, 8, 8]
    assert "polygons dropped (< 6 numbers), annotation kept: 1" in log


def test_zero_area_and_out_of_image_boxes_are_dropped_and_counted(tmp_path):
    anns = [box(2, 2, 8, 8), box(5, 5, 0, 4), box(5, 5, 4, 0), box(40, 40, 5, 5), box(-9, 3, 4, 4)]
    dicts, log = _load_with_log(tmp_path, "bad_input_boxes", [("a", 20, 20, anns)])
    assert "dropped: box missing or with no area: 2" in log
    assert len(dicts[0]["annotations"]) == 3
    key = "box with no area after clipping"
    before = WPSSAMDatasetMapper.dropped_counts[key]
    with captured_log("wps_sam.data.dataset_mappers.wps_sam_dataset_mapper") as mlog:
        out = WPSSAMDatasetMapper(tiny_cfg(**{"MODEL.SAM.IMAGE_SIZE": 20}), is_train=True)(dicts[0])
    assert out["instances"].gt_boxes.tensor.tolist() == [[2.0, 2.0, 10.0, 10.0]]
    assert WPSSAMDatasetMapper.dropped_counts[key] - before == 2
    assert "a.jpg" in mlog.getvalue() and key in mlog.getvalue()


def test_unknown_category_ids_are_dropped_and_counted(tmp_path):
    anns = [box(2, 2, 8, 8, cat=1), box(2, 2, 8, 8, cat=7), box(2, 2, 8, 8, cat=-1)]
    dicts, log = _load_with_log(tmp_path, "bad_input_categories", [("a", 20, 20, anns)])
    assert [a["category_id"] for a in dicts[0]["annotations"]] == [1]
    assert "dropped: category_id outside 0..C-1: 2" in log


def test_duplicate_image_ids_stop_the_loading(tmp_path):
    paths = write_dataset(tmp_path, [("a", 20, 20, [box(2, 2, 8, 8)]), ("b", 20, 20, [])])
    data = json.load(open(paths[1]))
    data["images"][1]["id"] = data["images"][0]["id"]
    json.dump(data, open(paths[1], "w"))
    name = register("bad_input_duplicate_ids", paths)
    with pytest.raises(ValueError, match=r"1 image ids are used by more than one.*a\.jpg.*b\.jpg"):
        DatasetCatalog.get(name)


def test_more_parts_than_queries_are_counted_and_reported(sam_checkpoint):
    model = build_model(tiny_cfg(**{"MODEL.SAM.CHECKPOINT": sam_checkpoint})).train()  # 5 queries
    inst = Instances((128, 128))
    inst.gt_boxes = Boxes(torch.tensor([[i * 10.0, 0.0, i * 10.0 + 8, 8.0] for i in range(8)]))
    inst.gt_classes = torch.zeros(8, dtype=torch.int64)
    x = {"image": torch.zeros(3, 128, 128, dtype=torch.uint8), "instances": inst}
    with EventStorage() as storage, captured_log("wps_sam.modeling.criterion") as log:
        losses = model([x])
        assert storage.latest()["wps_sam/unmatched_parts"][0] == 3
    assert "3 parts in this batch exceed the 5 queries" in log.getvalue()
    assert "NUM_QUERIES" in log.getvalue()
    assert all(torch.isfinite(v) for v in losses.values())


# -------------------------------------------------------------------------------------------------
# Training: a non-finite loss stops the run; the last good checkpoint is kept
# -------------------------------------------------------------------------------------------------
def test_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    images = [(f"i{k}", 24, 24, [box(2 + k, 2, 10, 10, cat=k % 3)]) for k in range(4)]
    name = register("bad_input_train", write_dataset(tmp_path / "data", images))
    cfg = tiny_cfg(
        **{
            "DATASETS.TRAIN": f"('{name}',)",
            "DATASETS.TEST": "()",
            "SOLVER.MAX_ITER": 5,
            "SOLVER.CHECKPOINT_PERIOD": 1,
            "OUTPUT_DIR": str(tmp_path / "out"),
        }
    )
    cfg.freeze()
    trainer = Trainer(cfg)
    model = trainer.model
    real_losses = model.losses

    def losses_nan_at_iteration_2(embeddings, batched_inputs):
        out = real_losses(embeddings, batched_inputs)
        if trainer.iter == 2:
            out["loss_cls"] = out["loss_cls"] * float("nan")
        return out

    model.losses = losses_nan_at_iteration_2
    with pytest.raises(FloatingPointError, match="Loss became infinite or NaN at iteration=2"):
        trainer.train()
    out = tmp_path / "out"
    assert (out / "last_checkpoint").read_text().strip() == "model_0000001.pth"
    assert not (out / "model_0000002.pth").exists() and not (out / "model_final.pth").exists()
    saved = torch.load(out / "model_0000001.pth", weights_only=True)["model"]
    assert all(torch.isfinite(v).all() for v in saved.values())
    # No optimizer step was taken with the NaN loss: the weights in memory are the saved ones.
    for k, v in model.prompter.state_dict().items():
        assert torch.equal(v, saved["prompter." + k]), k


# -------------------------------------------------------------------------------------------------
# PASCAL-Part: the official .mat files call the dining table "table"
# -------------------------------------------------------------------------------------------------
def test_pascal_part_table_is_an_object_class_without_parts(tmp_path):
    from test_datasets_pascal_part import _box, _load_script, write_pascal_part_mat

    from wps_sam.data.pascal_part_classes import PASCAL_PART_BACKGROUND_ID, PASCAL_PART_CLASSES

    h, w = 12, 16
    jpg, mat = tmp_path / "2008_000009.jpg", tmp_path / "2008_000009.mat"
    Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(jpg)
    write_pascal_part_mat(
        str(mat),
        "2008_000009",
        [
            ("table", 11, _box(h, w, 6, 12, 0, 16), []),
            ("bottle", 5, _box(h, w, 0, 6, 2, 6), [("body", _box(h, w, 0, 6, 2, 6))]),
        ],
    )
    label, anns, stats = _load_script().convert_image(str(mat), str(jpg))
    assert (label[6:12] == PASCAL_PART_BACKGROUND_ID).all()  # not 255 (ignored) as before
    assert (label[0:6, 2:6] == PASCAL_PART_CLASSES.index("bottle body")).all()
    assert stats["objects of classes without parts (background): diningtable"] == 1
    assert not any("unknown class" in k for k in stats)
    assert [a["category_id"] for a in anns] == [PASCAL_PART_CLASSES.index("bottle body")]
