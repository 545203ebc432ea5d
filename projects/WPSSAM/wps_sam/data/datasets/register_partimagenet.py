"""PartImageNet (segmentation release) in detectron2's ``DatasetCatalog``/``MetadataCatalog``.

Expected layout under ``$DETECTRON2_DATASETS`` (default ``./datasets``), exactly as released::

    PartImageNet/
      images/{train,val,test}/<synset>_<n>.JPEG
      annotations/{train,val,test}/{train,val,test}.json   # COCO style, part categories 0..39
      annotations/{train,val,test}/<synset>_<n>.png       # part label map, 40 = background

Registered splits: ``partimagenet_train``, ``partimagenet_val``, ``partimagenet_test``.

Label conventions (shared by every dataset of the project): part classes have contiguous ids
``0..C-1`` in the JSON and in the label PNGs, background is ``C``, ``255`` is ignore.

:func:`load_partimagenet_json` handles the release's known quirks without losing boxes (WPS-SAM
trains from boxes): polygons with fewer than 6 numbers (detectron2's ``load_coco_json`` drops them
and then the whole instance) are dropped *alone* and counted; annotations with area 0 but a valid
box are kept and counted; images without annotations are kept (they carry a label map for
evaluation; ``DATALOADER.FILTER_EMPTY_ANNOTATIONS`` decides whether training sees them) and
counted. Only annotations whose box has no area are dropped, counted, with the reason logged.

:func:`register_partimagenet_style_split` is the generic entry point used by every dataset in the
PartImageNet layout (the real one, and the synthetic part benchmark).
"""

import json
import logging
import os
from collections import Counter

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode
from detectron2.utils.file_io import PathManager

logger = logging.getLogger(__name__)

__all__ = [
    "PARTIMAGENET_PART_CLASSES",
    "DatasetFilesMissingError",
    "load_partimagenet_json",
    "register_partimagenet_style_split",
    "register_all_partimagenet",
]

README_HINT = "See datasets/README.md for where to get the data and the expected layout."

# The 40 part classes of the segmentation release, in id order ("Tier" is the dataset's spelling).
# The loader reads the names from the JSON; this list is only the check (and the metadata that must
# exist before the JSON is read).
PARTIMAGENET_PART_CLASSES = [
    "Quadruped Head",
    "Quadruped Body",
    "Quadruped Foot",
    "Quadruped Tail",
    "Biped Head",
    "Biped Body",
    "Biped Hand",
    "Biped Foot",
    "Biped Tail",
    "Fish Head",
    "Fish Body",
    "Fish Fin",
    "Fish Tail",
    "Bird Head",
    "Bird Body",
    "Bird Wing",
    "Bird Foot",
    "Bird Tail",
    "Snake Head",
    "Snake Body",
    "Reptile Head",
    "Reptile Body",
    "Reptile Foot",
    "Reptile Tail",
    "Car Body",
    "Car Tier",
    "Car Side Mirror",
    "Bicycle Body",
    "Bicycle Head",
    "Bicycle Seat",
    "Bicycle Tier",
    "Boat Body",
    "Boat Sail",
    "Aeroplane Head",
    "Aeroplane Body",
    "Aeroplane Engine",
    "Aeroplane Wing",
    "Aeroplane Tail",
    "Bottle Mouth",
    "Bottle Body",
]

PARTIMAGENET_SPLITS = ("train", "val", "test")


class DatasetFilesMissingError(FileNotFoundError):
    """A registered dataset is used but its files are not on disk."""


def _check_exists(path, what, dataset_name):
    if not PathManager.exists(path):
        name = f"dataset '{dataset_name}'" if dataset_name else "the dataset"
        root = os.getenv("DETECTRON2_DATASETS", "datasets")
        raise DatasetFilesMissingError(
            f"{what} of {name} not found: {path}. Set $DETECTRON2_DATASETS to the folder that "
            f"holds the datasets (now {root!r}). {README_HINT}"
        )


def _check_image_files(dataset_dicts, dataset_name):
    """Stop, listing them, if image files of the dataset are missing (a cheap check of every file
    before training or evaluation starts; see docs/TROUBLESHOOTING.md for why it stops)."""
    missing = [
        d["file_name"]
        for d in dataset_dicts
        if "://" not in d["file_name"] and not os.path.isfile(d["file_name"])
    ]
    if missing:
        raise DatasetFilesMissingError(
            f"{len(missing)} of the {len(dataset_dicts)} images of dataset '{dataset_name}' are "
            f"missing (first: {missing[:3]}). The image folder is incomplete (an interrupted "
            "download or extraction) or is not the one the annotation JSON describes: restore "
            f"the files, or remove their entries from the JSON. {README_HINT}"
        )


def _valid_polygons(segmentation):
    """Split a COCO polygon list into (kept polygons, number dropped)."""
    kept = [p for p in segmentation if len(p) >= 6 and len(p) % 2 == 0]
    return kept, len(segmentation) - len(kept)


def load_partimagenet_json(json_file, image_root, sem_seg_root, dataset_name=None):
    """
    Load a COCO-style part JSON in the PartImageNet layout into detectron2 dicts.

    Args:
        json_file (str): the COCO JSON (``images``, ``annotations``, ``categories``).
        image_root (str): folder that ``images[i]["file_name"]`` is relative to.
        sem_seg_root (str): folder of the label PNGs, ``<file_name without extension>.png``.
        dataset_name (str or None): if given and its metadata has ``thing_classes``, the JSON's
            category names must equal them (else ``ValueError``); if it has none, they are set.

    Returns:
        list[dict]: one dict per image with ``file_name``, ``image_id``, ``height``, ``width``,
        ``sem_seg_file_name`` and ``annotations`` (possibly empty): dicts with ``bbox`` (XYWH_ABS),
        ``bbox_mode``, ``category_id`` (0..C-1), ``iscrowd``, ``area`` and, when at least one
        polygon is valid, ``segmentation`` (a polygon list, or an RLE dict kept as is).
    """
    with PathManager.open(json_file, "r") as f:
        data = json.load(f)
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise ValueError(f"{json_file} is not a COCO-style JSON: it has no '{key}' list.")

    categories = sorted(data["categories"], key=lambda c: c["id"])
    cat_ids = [c["id"] for c in categories]
    if cat_ids != list(range(len(cat_ids))):
        raise ValueError(
            f"{json_file}: category ids must be the contiguous ids 0..C-1 that the label PNGs use "
            f"(PartImageNet convention), got {cat_ids[:10]}{'...' if len(cat_ids) > 10 else ''}."
        )
    class_names = [c["name"] for c in categories]
    if dataset_name is not None:
        meta = MetadataCatalog.get(dataset_name)
        expected = meta.get("thing_classes", None)
        if expected is None:
            meta.thing_classes = class_names
        elif list(expected) != class_names:
            diff = [(i, e, g) for i, (e, g) in enumerate(zip(expected, class_names)) if e != g]
            raise ValueError(
                f"{json_file}: the category names do not match the {len(expected)} classes "
                f"registered for '{dataset_name}' ({len(class_names)} in the JSON; first "
                f"differences as (id, registered, json): {diff[:5]})."
            )

    id_counts = Counter(img["id"] for img in data["images"])
    duplicates = [i for i, n in id_counts.items() if n > 1]
    if duplicates:
        names = [img["file_name"] for img in data["images"] if img["id"] == duplicates[0]]
        raise ValueError(
            f"{json_file}: {len(duplicates)} image ids are used by more than one image (first: id "
            f"{duplicates[0]} for {names[:3]}), so their annotations cannot be assigned. Give "
            "every image its own id (re-run the dataset's preparation script)."
        )
    anns_per_image = {}
    for ann in data["annotations"]:
        anns_per_image.setdefault(ann["image_id"], []).append(ann)

    stats = Counter()
    orphans = sum(len(v) for k, v in anns_per_image.items() if k not in id_counts)
    if orphans:
        stats["dropped: image_id of no image"] += orphans
    dataset_dicts = []
    for img in data["images"]:
        file_name = img["file_name"]
        record = {
            "file_name": os.path.join(image_root, file_name),
            "image_id": img["id"],
            "height": img["height"],
            "width": img["width"],
            "sem_seg_file_name": os.path.join(
                sem_seg_root, os.path.splitext(file_name)[0] + ".png"
            ),
        }
        objs = []
        for ann in anns_per_image.get(img["id"], []):
            stats["annotations"] += 1
            if ann.get("ignore", 0) != 0:
                stats["dropped: 'ignore' flag set"] += 1
                continue
            cat = ann["category_id"]
            if not 0 <= cat < len(class_names):
                stats["dropped: category_id outside 0..C-1"] += 1
                continue
            segm, n_bad = ann.get("segmentation", None), 0
            if isinstance(segm, list):
                segm, n_bad = _valid_polygons(segm)
            bbox = ann.get("bbox", None)
            if bbox is None and isinstance(segm, list) and segm:
                xs = [x for p in segm for x in p[0::2]]
                ys = [y for p in segm for y in p[1::2]]
                bbox = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
                stats["boxes computed from polygons (no 'bbox')"] += 1
            if bbox is None or len(bbox) != 4 or bbox[2] <= 0 or bbox[3] <= 0:
                stats["dropped: box missing or with no area"] += 1
                continue
            if n_bad:
                stats["polygons dropped (< 6 numbers), annotation kept"] += n_bad
            if ann.get("area", 1) == 0:
                stats["area-0 annotations kept (valid box)"] += 1
            obj = {
                "bbox": [float(v) for v in bbox],
                "bbox_mode": BoxMode.XYWH_ABS,
                "category_id": cat,
                "iscrowd": ann.get("iscrowd", 0),
                "area": ann.get("area", bbox[2] * bbox[3]),
            }
            if isinstance(segm, dict) or (isinstance(segm, list) and segm):
                obj["segmentation"] = segm
            elif ann.get("segmentation"):
                stats["annotations left without a valid polygon (box kept)"] += 1
            objs.append(obj)
        record["annotations"] = objs
        if not objs:
            stats["images without annotations (kept for evaluation)"] += 1
        dataset_dicts.append(record)

    name = dataset_name or json_file
    logger.info(
        f"Loaded {len(dataset_dicts)} images, {sum(len(d['annotations']) for d in dataset_dicts)} "
        f"part annotations, {len(class_names)} part classes from {json_file}."
    )
    for reason, count in sorted(stats.items()):
        if reason.startswith("dropped"):
            logger.warning(f"[{name}] {reason}: {count}")
        elif reason != "annotations":
            logger.info(f"[{name}] {reason}: {count}")
    return dataset_dicts


def register_partimagenet_style_split(
    name, image_root, json_file, sem_seg_root, class_names, before_load=None, **extra_metadata
):
    """
    Register one split in the PartImageNet layout.

    Nothing is read at registration. When the dataset is used, ``before_load()`` (if given, e.g.
    to check that generated data is there and current) runs first; then missing files raise
    :class:`DatasetFilesMissingError` naming the path and pointing to ``datasets/README.md``.

    Args:
        name (str): dataset name, e.g. ``"partimagenet_train"``.
        image_root, json_file, sem_seg_root (str): see :func:`load_partimagenet_json`.
        class_names (list[str]): the C part classes in id order (checked against the JSON).
        before_load (callable or None): called without arguments before loading.
        extra_metadata: more metadata fields.
    """
    class_names = list(class_names)

    def _load():
        if before_load is not None:
            before_load()
        _check_exists(json_file, "Annotation JSON", name)
        _check_exists(image_root, "Image folder", name)
        _check_exists(sem_seg_root, "Label-map folder", name)
        dicts = load_partimagenet_json(json_file, image_root, sem_seg_root, dataset_name=name)
        _check_image_files(dicts, name)
        return dicts

    DatasetCatalog.register(name, _load)
    MetadataCatalog.get(name).set(
        stuff_classes=class_names + ["background"],
        thing_classes=class_names,
        ignore_label=255,
        evaluator_type="sem_seg",
        sem_seg_root=sem_seg_root,
        image_root=image_root,
        json_file=json_file,
        background_id=len(class_names),
        **extra_metadata,
    )


def register_all_partimagenet(root, name_prefix="partimagenet"):
    """Register ``<name_prefix>_{train,val,test}`` under ``<root>/PartImageNet``."""
    base = os.path.join(root, "PartImageNet")
    for split in PARTIMAGENET_SPLITS:
        name = f"{name_prefix}_{split}"
        if name in DatasetCatalog.list():
            continue
        register_partimagenet_style_split(
            name,
            image_root=os.path.join(base, "images", split),
            json_file=os.path.join(base, "annotations", split, f"{split}.json"),
            sem_seg_root=os.path.join(base, "annotations", split),
            class_names=PARTIMAGENET_PART_CLASSES,
            dataset_family="partimagenet",
        )


register_all_partimagenet(os.getenv("DETECTRON2_DATASETS", "datasets"))
