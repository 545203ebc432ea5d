"""Optimizer and epoch-based schedule of WPS-SAM (only the prompter's parameters train)."""

import logging
import math

import torch
from detectron2.data import DatasetCatalog
from detectron2.solver import LRMultiplier, WarmupParamScheduler
from detectron2.solver.build import build_lr_scheduler, maybe_add_gradient_clipping
from fvcore.common.param_scheduler import CosineParamScheduler

__all__ = [
    "ClampedLRMultiplier",
    "build_wps_sam_lr_scheduler",
    "build_wps_sam_optimizer",
    "resolve_epoch_schedule",
]

logger = logging.getLogger(__name__)


def build_wps_sam_optimizer(cfg, model: torch.nn.Module) -> torch.optim.Optimizer:
    """Adam (the paper's), AdamW or SGD over the parameters that require grad, i.e. the prompter.

    SAM's frozen parameters are not handed to the optimizer at all, so they cannot drift through
    weight decay or momentum and cost no optimizer state.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("The model has no trainable parameters")
    name = cfg.SOLVER.OPTIMIZER.upper()
    lr, wd = cfg.SOLVER.BASE_LR, cfg.SOLVER.WEIGHT_DECAY
    if name == "ADAM":
        optimizer_cls, kwargs = torch.optim.Adam, {"lr": lr, "weight_decay": wd}
    elif name == "ADAMW":
        optimizer_cls, kwargs = torch.optim.AdamW, {"lr": lr, "weight_decay": wd}
    elif name == "SGD":
        optimizer_cls = torch.optim.SGD
        kwargs = {"lr": lr, "weight_decay": wd, "momentum": cfg.SOLVER.MOMENTUM}
    else:
        raise ValueError(
            f"SOLVER.OPTIMIZER must be ADAM, ADAMW or SGD, not {cfg.SOLVER.OPTIMIZER!r}"
        )
    clip = cfg.SOLVER.CLIP_GRADIENTS
    if clip.ENABLED and clip.CLIP_TYPE == "full_model":
        optimizer_cls = _with_full_model_clipping(optimizer_cls, clip.CLIP_VALUE, clip.NORM_TYPE)
    else:  # detectron2's per-parameter "value" / "norm" clipping (or none)
        optimizer_cls = maybe_add_gradient_clipping(cfg, optimizer_cls)
    return optimizer_cls(params, **kwargs)


def _with_full_model_clipping(optimizer_cls, max_norm: float, norm_type: float):
    """``optimizer_cls`` whose ``step`` first clips the norm of *all* its gradients together to
    ``max_norm`` (as DETR does), rather than each parameter's alone (detectron2's "norm")."""

    def step(self, closure=None):
        params = [p for group in self.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type)
        return optimizer_cls.step(self, closure)

    return type(optimizer_cls.__name__ + "WithFullModelClipping", (optimizer_cls,), {"step": step})


def resolve_epoch_schedule(cfg, num_images: int = None):
    """Turn ``SOLVER.NUM_EPOCHS`` into ``SOLVER.MAX_ITER`` (and STEP_FRACTIONS into STEPS).

    ``num_images`` defaults to the size of ``DATASETS.TRAIN`` (loaded from the catalog), so one
    config describes "150 epochs" for whatever the dataset's real size is. No-op when NUM_EPOCHS
    is 0. ``cfg`` must be mutable; returns it.
    """
    epochs = cfg.SOLVER.NUM_EPOCHS
    if epochs <= 0:
        return cfg
    if num_images is None:
        num_images = sum(len(DatasetCatalog.get(name)) for name in cfg.DATASETS.TRAIN)
    if num_images <= 0:
        raise ValueError(f"DATASETS.TRAIN {tuple(cfg.DATASETS.TRAIN)} has no images")
    iters_per_epoch = math.ceil(num_images / cfg.SOLVER.IMS_PER_BATCH)
    cfg.SOLVER.MAX_ITER = int(math.ceil(epochs * iters_per_epoch))
    cfg.SOLVER.STEPS = tuple(int(f * cfg.SOLVER.MAX_ITER) for f in cfg.SOLVER.STEP_FRACTIONS)
    logger.info(
        f"{epochs} epochs of {num_images} images at batch {cfg.SOLVER.IMS_PER_BATCH}: "
        f"SOLVER.MAX_ITER={cfg.SOLVER.MAX_ITER}, SOLVER.STEPS={cfg.SOLVER.STEPS}"
    )
    return cfg


class ClampedLRMultiplier(LRMultiplier):
    """detectron2's ``LRMultiplier`` whose schedule stops at ``max_iter``: stepped past it, the LR
    stays at its final value (a bare cosine would rise again, as the authors' does after its
    hard-coded 38370 steps)."""

    def get_lr(self):
        where = min(self.last_epoch / self._max_iter, 1.0)
        return [base_lr * self._multiplier(where) for base_lr in self.base_lrs]


def build_wps_sam_lr_scheduler(cfg, optimizer: torch.optim.Optimizer):
    """detectron2's scheduler for ``SOLVER.LR_SCHEDULER_NAME``, with "WarmupCosineLR" clamped.

    "WarmupCosineLR" is the authors' schedule: linear warmup over ``SOLVER.WARMUP_ITERS``
    iterations from ``SOLVER.WARMUP_FACTOR`` x the base LR, then a cosine that reaches 0 at
    ``SOLVER.MAX_ITER`` (detectron2's cosine spans the whole run and the warmup ramps to its
    value at the warmup's end; the authors' starts its cosine after the warmup: the two differ
    by at most ``WARMUP_ITERS / MAX_ITER`` of the schedule). Every other name is detectron2's own.
    """
    if cfg.SOLVER.LR_SCHEDULER_NAME != "WarmupCosineLR":
        return build_lr_scheduler(cfg, optimizer)
    max_iter = cfg.SOLVER.MAX_ITER
    if max_iter <= 0:
        raise ValueError(f"SOLVER.MAX_ITER must be > 0 for WarmupCosineLR, not {max_iter}")
    sched = WarmupParamScheduler(
        CosineParamScheduler(1.0, 0.0),
        cfg.SOLVER.WARMUP_FACTOR,
        min(cfg.SOLVER.WARMUP_ITERS / max_iter, 1.0),
        cfg.SOLVER.WARMUP_METHOD,
    )
    return ClampedLRMultiplier(optimizer, multiplier=sched, max_iter=max_iter)
