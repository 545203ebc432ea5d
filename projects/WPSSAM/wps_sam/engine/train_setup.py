"""The config setup of ``tools/train_net.py`` (detectron2's ``setup(args)`` of its train_net)."""

import logging

import detectron2.utils.comm as comm
import torch
from detectron2.config import get_cfg
from detectron2.engine import default_setup
from detectron2.utils.logger import setup_logger

from ..config import add_wps_sam_config
from ..data.catalog_utils import resolve_num_classes
from ..solver import resolve_epoch_schedule

__all__ = ["setup"]


def setup(args):
    """The frozen config of detectron2's ``default_argument_parser`` arguments: WPS-SAM's keys,
    ``args.config_file`` and ``args.opts``, on the CPU when CUDA is absent, the number of classes
    checked against the datasets and (training) the epoch schedule resolved into MAX_ITER; then
    detectron2's ``default_setup`` (output folder, logs, seed) and the ``wps_sam`` logger."""
    cfg = get_cfg()
    add_wps_sam_config(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        logging.getLogger("wps_sam").warning("CUDA is not available: running on the CPU")
        cfg.MODEL.DEVICE = "cpu"
    resolve_num_classes(cfg)
    if not args.eval_only:
        resolve_epoch_schedule(cfg)
    cfg.freeze()
    default_setup(cfg, args)
    setup_logger(output=cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="wps_sam")
    return cfg
