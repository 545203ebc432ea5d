"""Config checks against the dataset catalogs."""

import logging

from detectron2.data import DatasetCatalog, MetadataCatalog

__all__ = ["resolve_num_classes"]

logger = logging.getLogger(__name__)


def resolve_num_classes(cfg):
    """Check ``MODEL.WPS_SAM.NUM_CLASSES`` against the datasets' part classes; fill it in if 0.

    Every dataset in DATASETS.TRAIN and DATASETS.TEST must have the same ``thing_classes``.
    ``cfg`` must be mutable; returns it.
    """
    names = list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST)
    registered = set(DatasetCatalog.list())
    unknown = [n for n in names if n not in registered]
    if unknown:
        ours = sorted(
            n for n in registered if n.startswith(("partimagenet_", "pascal_part_", "synthetic_"))
        )
        raise KeyError(
            f"Dataset(s) {unknown} in DATASETS.TRAIN/TEST are not registered. The project "
            f"registers {ours}; register your own in the PartImageNet layout with "
            "wps_sam.data.datasets.register_partimagenet.register_partimagenet_style_split "
            "(datasets/README.md)."
        )
    found = {}
    for name in names:
        classes = MetadataCatalog.get(name).get("thing_classes", None)
        if classes is not None:
            found[name] = len(classes)
    if len(set(found.values())) > 1:
        raise ValueError(f"The datasets {found} do not have the same number of part classes")
    if not found:
        if cfg.MODEL.WPS_SAM.NUM_CLASSES <= 0:
            raise ValueError(
                "MODEL.WPS_SAM.NUM_CLASSES is 0 and no dataset in DATASETS.TRAIN/TEST has "
                "thing_classes metadata to take it from"
            )
        return cfg
    num = next(iter(found.values()))
    if cfg.MODEL.WPS_SAM.NUM_CLASSES <= 0:
        cfg.MODEL.WPS_SAM.NUM_CLASSES = num
        logger.info(f"MODEL.WPS_SAM.NUM_CLASSES set to {num} from the dataset metadata")
    elif cfg.MODEL.WPS_SAM.NUM_CLASSES != num:
        raise ValueError(
            f"MODEL.WPS_SAM.NUM_CLASSES={cfg.MODEL.WPS_SAM.NUM_CLASSES} but the datasets "
            f"{names} have {num} part classes: fix the config (or set it to 0 to infer it)"
        )
    return cfg
