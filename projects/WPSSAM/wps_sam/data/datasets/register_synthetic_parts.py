"""The synthetic part benchmark (:mod:`wps_sam.synthetic.parts`) in detectron2's catalogs.

Registered splits: ``synthetic_parts_train``, ``synthetic_parts_val``, ``synthetic_parts_test``, in
the PartImageNet layout under ``$DETECTRON2_DATASETS/synthetic_parts`` (default
``./datasets/synthetic_parts``), through the same loader as PartImageNet. A split whose JSON is
missing is generated with the default settings (:data:`DEFAULT_SPLIT_SIZES` images of
:data:`DEFAULT_IMAGE_SIZE` px, seed :data:`DEFAULT_SEED`) the first time the dataset is used;
``datasets/prepare_synthetic_parts.py`` generates it with other settings.
"""

import json
import logging
import os

from detectron2.data import DatasetCatalog, MetadataCatalog

from wps_sam.synthetic.parts import (
    DEFAULT_IMAGE_SIZE,
    DEFAULT_SEED,
    DEFAULT_SPLIT_SIZES,
    GENERATOR_VERSION,
    SYNTHETIC_PART_CLASSES,
    SYNTHETIC_PART_SUPERCATEGORIES,
    generate_synthetic_parts,
    synthetic_split_paths,
)

from .register_partimagenet import register_partimagenet_style_split

__all__ = [
    "SYNTHETIC_PART_CLASSES",
    "SYNTHETIC_PARTS_SPLITS",
    "SYNTHETIC_TRAIN_SUBSETS",
    "register_all_synthetic_parts",
    "synthetic_parts_root",
]

logger = logging.getLogger(__name__)

SYNTHETIC_PARTS_SPLITS = ("train", "val", "test")
# ``<prefix>_train_<n>``: the first n training images (same files, same embedding cache), for
# recipes that need many epochs within a CPU budget (the paper's prompter at ~100 epochs).
SYNTHETIC_TRAIN_SUBSETS = (320,)


def synthetic_parts_root(datasets_root=None):
    """``<datasets_root or $DETECTRON2_DATASETS or ./datasets>/synthetic_parts``."""
    if datasets_root is None:
        datasets_root = os.getenv("DETECTRON2_DATASETS", "datasets")
    return os.path.join(datasets_root, "synthetic_parts")


def _generate_if_missing(root, split):
    """The ``before_load`` of a split: generate it with the defaults if its JSON is missing."""

    def before_load():
        json_file = synthetic_split_paths(root, split)["json_file"]
        if not os.path.isfile(json_file):
            logger.info(
                f"synthetic_parts_{split}: {json_file} not found; generating the split with the "
                f"default settings ({DEFAULT_SPLIT_SIZES[split]} images of {DEFAULT_IMAGE_SIZE} "
                f"px, seed {DEFAULT_SEED}). Use datasets/prepare_synthetic_parts.py for other "
                "settings."
            )
            generate_synthetic_parts(root, split, seed=DEFAULT_SEED)
            return
        with open(json_file) as f:
            info = json.load(f).get("info", {})
        version = info.get("version")
        if version != GENERATOR_VERSION:
            # Derived data that this code would draw differently: scores on it would not be the
            # benchmark's. Redraw it with the settings it was made with.
            logger.warning(
                f"synthetic_parts_{split}: {json_file} was written by generator version {version}, "
                f"the code is version {GENERATOR_VERSION}: regenerating the split (seed "
                f"{info.get('seed', DEFAULT_SEED)}, {info.get('num_images')} images)."
            )
            generate_synthetic_parts(
                root,
                split,
                num_images=info.get("num_images", DEFAULT_SPLIT_SIZES[split]),
                image_size=info.get("image_size", DEFAULT_IMAGE_SIZE),
                seed=info.get("seed", DEFAULT_SEED),
            )

    return before_load


def register_all_synthetic_parts(root=None, name_prefix="synthetic_parts"):
    """Register ``<name_prefix>_{train,val,test}`` for the synthetic part dataset at ``root``.

    Args:
        root (str or None): dataset folder (holding ``images/`` and ``annotations/``); None =
            :func:`synthetic_parts_root`.
        name_prefix (str): prefix of the dataset names. Names already registered are left alone.
    """
    root = synthetic_parts_root() if root is None else root
    for split in SYNTHETIC_PARTS_SPLITS:
        name = f"{name_prefix}_{split}"
        if name in DatasetCatalog.list():
            continue
        paths = synthetic_split_paths(root, split)
        register_partimagenet_style_split(
            name,
            image_root=paths["image_root"],
            json_file=paths["json_file"],
            sem_seg_root=paths["sem_seg_root"],
            class_names=SYNTHETIC_PART_CLASSES,
            before_load=_generate_if_missing(root, split),
            dataset_family="synthetic_parts",
            part_supercategories=list(SYNTHETIC_PART_SUPERCATEGORIES),
            dataset_root=root,
        )
    for size in SYNTHETIC_TRAIN_SUBSETS:
        _register_train_subset(f"{name_prefix}_train", size)


def _register_train_subset(full_name, size):
    name = f"{full_name}_{size}"
    if name in DatasetCatalog.list():
        return

    def load():
        dicts = DatasetCatalog.get(full_name)
        if len(dicts) < size:
            raise ValueError(
                f"{name} needs {size} images but {full_name} has {len(dicts)}: regenerate it "
                "with datasets/prepare_synthetic_parts.py --num-train >= {size}"
            )
        return dicts[:size]

    DatasetCatalog.register(name, load)
    full_meta = MetadataCatalog.get(full_name).as_dict()
    full_meta.pop("name", None)
    MetadataCatalog.get(name).set(**full_meta)


register_all_synthetic_parts()
