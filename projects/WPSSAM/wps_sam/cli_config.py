"""Config loading shared by the command-line tools in tools/."""

import torch
from detectron2.config import get_cfg

from .config import add_wps_sam_config
from .data.catalog_utils import resolve_num_classes

__all__ = ["load_wps_sam_cfg"]


def load_wps_sam_cfg(config_file, opts=(), freeze=True):
    """get_cfg + add_wps_sam_config + ``config_file`` + ``opts``, on the CPU when CUDA is absent,
    with MODEL.WPS_SAM.NUM_CLASSES checked against the datasets."""
    cfg = get_cfg()
    add_wps_sam_config(cfg)
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
    resolve_num_classes(cfg)
    if freeze:
        cfg.freeze()
    return cfg
