"""Shared by the model tests: a tiny random-SAM WPS-SAM config and its SAM checkpoint."""

import os

import torch
from detectron2.config import get_cfg

from wps_sam import add_wps_sam_config
from wps_sam.modeling import build_sam
from wps_sam.modeling.sam_builder import sam_architecture_from_cfg

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_CLASSES = 3


def tiny_cfg(**overrides):
    """``configs/tests/tiny_random_sam.yaml`` with NUM_CLASSES part classes, then ``overrides``
    ({"KEY": value}, merged one by one as on the command line)."""
    cfg = get_cfg()
    add_wps_sam_config(cfg)
    cfg.merge_from_file(os.path.join(REPO, "configs/tests/tiny_random_sam.yaml"))
    cfg.MODEL.WPS_SAM.NUM_CLASSES = NUM_CLASSES
    for key, value in overrides.items():
        cfg.merge_from_list([key, value])
    return cfg


def save_tiny_sam_checkpoint(directory) -> str:
    """A random tiny SAM (seed 0) saved like an official checkpoint (a plain state dict)."""
    torch.manual_seed(0)
    path = os.path.join(str(directory), "tiny_sam.pth")
    torch.save(build_sam(sam_architecture_from_cfg(tiny_cfg())).state_dict(), path)
    return path
