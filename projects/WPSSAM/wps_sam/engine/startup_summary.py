"""What ``tools/train_net.py`` says before it trains or evaluates: model, SAM, data, cache."""

import logging
import os
from collections import OrderedDict
from typing import List

from detectron2.data import DatasetCatalog

from ..data.embedding_cache_status import cache_completeness

__all__ = ["count_parameters", "log_startup_summary", "startup_summary"]


def count_parameters(model) -> "OrderedDict[str, dict]":
    """
    Trainable and frozen parameter counts per top-level submodule of ``model``.

    Returns:
        OrderedDict {submodule name: {"trainable": int, "frozen": int}} in registration order,
        plus "total". A DDP-wrapped model is unwrapped first.
    """
    model = getattr(model, "module", model)
    counts = OrderedDict()
    for name, p in model.named_parameters():
        top = name.split(".", 1)[0]
        c = counts.setdefault(top, {"trainable": 0, "frozen": 0})
        c["trainable" if p.requires_grad else "frozen"] += p.numel()
    counts["total"] = {k: sum(c[k] for c in list(counts.values())) for k in ("trainable", "frozen")}
    return counts


def _sam_line(cfg) -> str:
    sam = cfg.MODEL.SAM
    ckpt = sam.CHECKPOINT
    if not ckpt:
        where = "no checkpoint: RANDOM weights (tests and smoke runs only)"
    elif os.path.isfile(ckpt):
        where = f"checkpoint {ckpt} ({os.path.getsize(ckpt) / 2**20:.1f} MiB)"
    else:
        where = f"checkpoint {ckpt} (NOT FOUND)"
    return f"SAM: variant {sam.VARIANT}, {sam.IMAGE_SIZE} px input, {where}"


def _fmt_count(n: int) -> str:
    return f"{n:,}"


def startup_summary(cfg, model, train: bool = True) -> List[str]:
    """
    The lines of the start-up summary.

    Args:
        cfg: the run's config.
        model: the built model (a ``WPSSAM``, maybe DDP-wrapped).
        train (bool): a training run (False: ``--eval-only``; the training sets are not listed).

    Returns:
        list[str]: parameters (trainable vs frozen, per top-level module), SAM variant and
        checkpoint, dataset sizes, and the embedding cache's state and completeness.
    """
    lines = []
    counts = count_parameters(model)
    total = counts.pop("total")
    parts = ", ".join(
        f"{name} {_fmt_count(c['trainable'])}/{_fmt_count(c['frozen'])}"
        for name, c in counts.items()
    )
    lines.append(
        f"parameters: {_fmt_count(total['trainable'])} trainable, "
        f"{_fmt_count(total['frozen'])} frozen (trainable/frozen per module: {parts})"
    )
    lines.append(_sam_line(cfg))
    names = (list(cfg.DATASETS.TRAIN) if train else []) + list(cfg.DATASETS.TEST)
    sizes = []
    for role, datasets in (("train", cfg.DATASETS.TRAIN), ("test", cfg.DATASETS.TEST)):
        if role == "train" and not train:
            continue
        for name in datasets:
            sizes.append(f"{role} {name}: {len(DatasetCatalog.get(name))} images")
    lines.append("datasets: " + ("; ".join(sizes) if sizes else "none"))
    if train:
        batch = cfg.SOLVER.IMS_PER_BATCH
        lines.append(
            f"schedule: {cfg.SOLVER.MAX_ITER} iterations of {batch} images, checkpoint every "
            f"{cfg.SOLVER.CHECKPOINT_PERIOD}, output {cfg.OUTPUT_DIR}, device {cfg.MODEL.DEVICE}"
        )
    status = cache_completeness(cfg, names)
    if not status["enabled"]:
        lines.append(
            "embedding cache: off (INPUT.EMBEDDING_CACHE_DIR is empty): the frozen SAM encoder "
            "runs on every image at every step"
        )
    elif not status["exists"]:
        lines.append(
            f"embedding cache: {status['cache_dir']} does not exist: the encoder runs on every "
            "image (tools/cache_embeddings.py fills it)"
        )
    else:
        t = status["total"]
        pct = 100.0 * t["cached"] / max(t["images"], 1)
        per = "; ".join(f"{n} {status[n]['cached']}/{status[n]['images']}" for n in names)
        note = ""
        if t["cached"] < t["images"]:
            note = (
                f" ({t['missing']} missing, {t['stale']} stale: the encoder runs for those; "
                "tools/cache_embeddings.py completes the cache)"
            )
        lines.append(
            f"embedding cache: {status['cache_dir']}: {t['cached']}/{t['images']} images "
            f"cached ({pct:.1f}%; {per}){note}"
        )
    return lines


def log_startup_summary(cfg, model, train: bool = True, logger=None) -> List[str]:
    """Log :func:`startup_summary` (INFO, logger ``wps_sam``); returns its lines."""
    logger = logger or logging.getLogger("wps_sam")
    lines = startup_summary(cfg, model, train=train)
    logger.info("Start-up summary:\n  " + "\n  ".join(lines))
    return lines
