"""Datasets over SAM pseudo-labels (see :mod:`wps_sam.data.pseudo_labels`), in detectron2's
semantic-segmentation format, so that any detectron2 segmentation model trains on them.

Registered: ``<source>_sam_pseudo`` for ``synthetic_parts_train``, ``partimagenet_train`` and
``pascal_part_train``, reading the label maps that ``tools/generate_pseudo_labels.py`` writes to
:func:`~wps_sam.data.pseudo_labels.default_pseudo_label_dir` (``<label-map folder>_sam_pseudo``).
Each dict is the source's (``file_name``, ``image_id``, ``height``, ``width``) with
``sem_seg_file_name`` pointing at the pseudo-label and no ``annotations``; the metadata is the
source's (classes, ``background_id``, ``ignore_label`` 255).
"""

import os

from detectron2.data import DatasetCatalog, MetadataCatalog

from ..pseudo_labels import default_pseudo_label_dir, pseudo_label_path

__all__ = ["PSEUDO_LABEL_SOURCES", "register_pseudo_label_dataset"]

PSEUDO_LABEL_SOURCES = ("synthetic_parts_train", "partimagenet_train", "pascal_part_train")

_COPIED_METADATA = (
    "stuff_classes",
    "thing_classes",
    "ignore_label",
    "background_id",
    "image_root",
    "dataset_family",
)


def register_pseudo_label_dataset(name: str, source: str, label_dir: str = None) -> None:
    """Register ``name``: the images of dataset ``source`` with the pseudo-labels in ``label_dir``
    (None: :func:`default_pseudo_label_dir` of ``source``, resolved when the data is loaded)."""

    def _load():
        folder = label_dir or default_pseudo_label_dir(source)
        dicts = []
        missing = []
        for d in DatasetCatalog.get(source):
            path = pseudo_label_path(folder, d["file_name"])
            if not os.path.exists(path):
                missing.append(path)
            keep = {k: v for k, v in d.items() if k not in ("annotations", "sem_seg_file_name")}
            dicts.append({**keep, "sem_seg_file_name": path})
        if missing:
            raise FileNotFoundError(
                f"Dataset {name!r}: {len(missing)} of {len(dicts)} SAM pseudo-labels are missing "
                f"in {folder} (first: {missing[0]}). Write them with: python "
                f"tools/generate_pseudo_labels.py --dataset {source} (it resumes where it stopped)."
            )
        return dicts

    DatasetCatalog.register(name, _load)
    src = MetadataCatalog.get(source)
    meta = {k: src.get(k) for k in _COPIED_METADATA if src.get(k, None) is not None}
    MetadataCatalog.get(name).set(
        evaluator_type="sem_seg",
        pseudo_label_source=source,
        sem_seg_root=label_dir or "",
        **meta,
    )


def register_all_pseudo_label_datasets():
    for source in PSEUDO_LABEL_SOURCES:
        name = f"{source}_sam_pseudo"
        if source in DatasetCatalog.list() and name not in DatasetCatalog.list():
            register_pseudo_label_dataset(name, source)


register_all_pseudo_label_datasets()
