"""PASCAL-Part (merged parts, see :mod:`wps_sam.data.pascal_part_classes`) in detectron2's catalogs.

Expected layout under ``$DETECTRON2_DATASETS`` (default ``./datasets``)::

    PASCAL-Part/
      VOCdevkit/VOC2010/JPEGImages/<id>.jpg          # VOC2010 images (download)
      VOCdevkit/VOC2010/ImageSets/Main/{train,val}.txt
      Annotations_Part/<id>.mat                       # Pascal-Part annotations (download)
      parts/{train,val}.json                          # written by datasets/prepare_pascal_part.py
      parts/labels/{train,val}/<id>.png               # written by datasets/prepare_pascal_part.py

Registered splits: ``pascal_part_train`` and ``pascal_part_val`` (the paper reports on val). They
read the converter's outputs through the same loader as PartImageNet
(:func:`~wps_sam.data.datasets.register_partimagenet.load_partimagenet_json`): part ids ``0..C-1``
in the merge table's order, background ``C``, ``255`` ignore.
"""

import os

from detectron2.data import DatasetCatalog

from ..pascal_part_classes import PASCAL_PART_CLASSES, PASCAL_PART_MERGE_TABLE
from .register_partimagenet import register_partimagenet_style_split

__all__ = ["PASCAL_PART_SPLITS", "pascal_part_paths", "register_all_pascal_part"]

PASCAL_PART_SPLITS = ("train", "val")


def pascal_part_paths(root, split):
    """
    Paths of one split under ``<root>/PASCAL-Part`` (shared with ``prepare_pascal_part.py``).

    Returns:
        dict: ``image_root``, ``json_file``, ``sem_seg_root``, ``voc_root``, ``part_anno_dir``,
        ``out_dir``.
    """
    base = os.path.join(root, "PASCAL-Part")
    voc_root = os.path.join(base, "VOCdevkit", "VOC2010")
    out_dir = os.path.join(base, "parts")
    return {
        "voc_root": voc_root,
        "part_anno_dir": os.path.join(base, "Annotations_Part"),
        "out_dir": out_dir,
        "image_root": os.path.join(voc_root, "JPEGImages"),
        "json_file": os.path.join(out_dir, f"{split}.json"),
        "sem_seg_root": os.path.join(out_dir, "labels", split),
    }


def register_all_pascal_part(root, name_prefix="pascal_part"):
    """Register ``<name_prefix>_{train,val}`` under ``<root>/PASCAL-Part``."""
    for split in PASCAL_PART_SPLITS:
        name = f"{name_prefix}_{split}"
        if name in DatasetCatalog.list():
            continue
        paths = pascal_part_paths(root, split)
        register_partimagenet_style_split(
            name,
            image_root=paths["image_root"],
            json_file=paths["json_file"],
            sem_seg_root=paths["sem_seg_root"],
            class_names=PASCAL_PART_CLASSES,
            dataset_family="pascal_part",
            object_classes=list(PASCAL_PART_MERGE_TABLE),
        )


register_all_pascal_part(os.getenv("DETECTRON2_DATASETS", "datasets"))
