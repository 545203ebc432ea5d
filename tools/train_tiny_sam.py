#!/usr/bin/env python
"""Pre-train the project's tiny SAM class-agnostically (CPU) and save it.

``--data v2`` (the default, tiny SAM v2): part objects of every kind at every granularity (parts,
groups of parts, whole objects) and generic shapes, from a split no benchmark split uses
(:mod:`wps_sam.tiny_sam.pretraining_data`); ``--data generic``: generic random shapes only (v1).
No class label is ever used.

The architecture comes from the MODEL.SAM keys of ``--config-file`` (default
``configs/synthetic/Base-TinySAM.yaml``); the checkpoint is written, as a float16 state dict in
the official ``sam_vit_*.pth`` layout, to ``--output`` (default: the config's MODEL.SAM.CHECKPOINT,
relative to the repository root). It is then reloaded through ``build_sam`` (the code that loads
official SAM checkpoints) and evaluated on held-out generic images with box and point prompts.

The commands of every committed or documented checkpoint are in docs/MODEL_ZOO.md.
"""

import argparse
import functools
import json
import logging
import os
import sys
import time

import torch

import wps_sam  # noqa: F401  isort:skip  (compatibility layer before detectron2)
from detectron2.config import get_cfg
from detectron2.utils.logger import setup_logger

from wps_sam.config import add_wps_sam_config
from wps_sam.modeling.sam_builder import build_sam, sam_architecture_from_cfg
from wps_sam.tiny_sam.generic_shapes import GenericShapesConfig
from wps_sam.tiny_sam.pretraining_data import PretrainingStreamConfig, generate_pretraining_sample
from wps_sam.tiny_sam.training import (
    PromptSamplingConfig,
    evaluate_prompted_sam,
    save_sam_state_dict,
    train_tiny_sam,
)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIG = os.path.join(REPO_ROOT, "configs", "synthetic", "Base-TinySAM.yaml")
# Held-out images come from another stream than any training seed can reach.
EVAL_SEED_OFFSET = 1_000_000
MAX_CHECKPOINT_BYTES = 25_000_000

logger = logging.getLogger("wps_sam.train_tiny_sam")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config-file", default=DEFAULT_CONFIG, help="yaml with the MODEL.SAM keys")
    p.add_argument("--output", default="", help="checkpoint path (default: MODEL.SAM.CHECKPOINT)")
    p.add_argument("--max-steps", type=int, default=1500, help="AdamW steps")
    p.add_argument("--batch-size", type=int, default=8, help="images per step")
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--warmup-steps", type=int, default=60)
    p.add_argument("--max-boxes", type=int, default=8, help="box prompts per image")
    p.add_argument("--max-points", type=int, default=2, help="single-point prompts per image")
    p.add_argument(
        "--easy-fraction",
        type=float,
        default=0.3,
        help="fraction of the steps (the first ones) on easy images: 1-4 large stand-alone shapes",
    )
    p.add_argument(
        "--data",
        choices=["v2", "generic"],
        default="v2",
        help="v2: part objects (parts, groups, objects) + generic shapes; generic: shapes (v1)",
    )
    p.add_argument(
        "--part-image-prob",
        type=float,
        default=0.7,
        help="--data v2: fraction of part-object images (the rest are generic shapes)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the data stream and the init")
    p.add_argument(
        "--init-checkpoint",
        default="",
        help="continue pre-training from this tiny SAM checkpoint (weights only; a new LR cycle; "
        "use another --seed so the data stream is new, and --easy-fraction 0)",
    )
    p.add_argument("--num-threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--eval-images", type=int, default=200, help="held-out images at the end")
    p.add_argument(
        "--eval-period", type=int, default=0, help="evaluate on 48 held-out images every N steps"
    )
    p.add_argument(
        "--eval-images-period", type=int, default=48, help="held-out images of each periodic eval"
    )
    p.add_argument(
        "--checkpoint-period",
        type=int,
        default=0,
        help="write the checkpoint and the curve every N steps (a killed run keeps its last one)",
    )
    p.add_argument(
        "--history", default="", help="JSON file for the curve (default: <output>.history.json)"
    )
    p.add_argument("--log-period", type=int, default=25)
    p.add_argument(
        "--time-limit-minutes",
        type=float,
        default=0.0,
        help="stop early (with a warning) when training takes longer (0: no limit)",
    )
    p.add_argument("--fp32", action="store_true", help="save float32 tensors (2x the size)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bars")
    return p.parse_args(argv)


def easy_shapes_config(image_size):
    """The curriculum's first stage: few, large, stand-alone shapes, from which a randomly
    initialised SAM learns to follow prompts much sooner than from the full distribution."""
    return GenericShapesConfig(
        image_size=image_size, max_objects=4, composite_prob=0.0, small_shape_prob=0.0
    )


def load_cfg(config_file):
    cfg = get_cfg()
    add_wps_sam_config(cfg)
    cfg.merge_from_file(config_file)
    cfg.freeze()
    return cfg


def _fmt(metrics):
    return (
        f"box mIoU {metrics['box_miou']:.4f} (small {metrics['box_miou_small']:.4f}, large "
        f"{metrics['box_miou_large']:.4f}); point mIoU: box centre "
        f"{metrics['center_point_miou']:.4f} (multimask, best score) / "
        f"{metrics['center_point_single_miou']:.4f} (single output), "
        f"random interior point {metrics['point_miou']:.4f}; {int(metrics['num_targets'])} targets"
    )


def main(argv=None):
    args = parse_args(argv)
    setup_logger(name="wps_sam")
    setup_logger(name="wps_sam.train_tiny_sam")
    torch.set_num_threads(args.num_threads)
    logger.info("Command: " + " ".join([os.path.relpath(sys.argv[0], REPO_ROOT)] + sys.argv[1:]))

    cfg = load_cfg(args.config_file)
    arch = sam_architecture_from_cfg(cfg)
    if arch.variant != "custom":
        raise SystemExit(
            f"{args.config_file} builds the official {arch.variant}; this script trains a 'custom'"
            " tiny SAM (set MODEL.SAM.VARIANT: custom and the ENCODER_* keys)."
        )
    output = args.output or cfg.MODEL.SAM.CHECKPOINT
    if not output:
        raise SystemExit("No output path: pass --output or set MODEL.SAM.CHECKPOINT in the config.")
    if not os.path.isabs(output):
        output = os.path.join(REPO_ROOT, output)

    torch.manual_seed(args.seed)
    sam = build_sam(arch, args.init_checkpoint or None)
    if args.init_checkpoint:
        logger.info(f"Continuing from {args.init_checkpoint}")
    n_params = sum(p.numel() for p in sam.parameters())
    logger.info(f"Tiny SAM {arch.describe()}: {n_params / 1e6:.2f} M parameters")

    data_cfg = GenericShapesConfig(image_size=arch.image_size)
    eval_seed = args.seed + EVAL_SEED_OFFSET
    sample_fn = None
    if args.data == "v2":
        stream = PretrainingStreamConfig(
            image_size=arch.image_size, part_image_prob=args.part_image_prob, generic=data_cfg
        )
        sample_fn = functools.partial(generate_pretraining_sample, cfg=stream)
    history_path = args.history or os.path.splitext(output)[0] + ".history.json"

    def quick_eval(model):
        return evaluate_prompted_sam(
            model, eval_seed, args.eval_images_period, data_cfg, sample_fn=sample_fn
        )

    def write_checkpoint(model, history):
        save_sam_state_dict(model, output, half=not args.fp32)
        record = {"command": sys.argv[1:], "data": args.data, "history": history}
        with open(history_path, "w") as f:
            json.dump(record, f, indent=1)
        logger.info(f"Checkpoint {output} and curve {history_path} written")

    start = time.perf_counter()
    history = train_tiny_sam(
        sam,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        seed=args.seed,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup_steps=args.warmup_steps,
        data_cfg=data_cfg,
        prompts=PromptSamplingConfig(max_boxes=args.max_boxes, max_points=args.max_points),
        log_period=args.log_period,
        eval_fn=quick_eval,
        eval_period=args.eval_period,
        show_progress=not args.no_progress,
        time_limit_s=args.time_limit_minutes * 60,
        easy_data_cfg=easy_shapes_config(arch.image_size),
        easy_fraction=args.easy_fraction,
        # A continued run keeps the trained positional embedding.
        sincos_position_init=not args.init_checkpoint,
        sample_fn=sample_fn,
        checkpoint_fn=write_checkpoint if args.checkpoint_period else None,
        checkpoint_period=args.checkpoint_period,
    )
    steps_done = history[-1]["step"] if history else 0
    train_time = time.perf_counter() - start
    logger.info(f"Trained {steps_done} of {args.max_steps} steps in {train_time / 60:.1f} min")

    size = save_sam_state_dict(sam, output, half=not args.fp32)
    logger.info(f"Saved {output} ({size / 1e6:.2f} MB)")
    if size > MAX_CHECKPOINT_BYTES:
        logger.warning(
            f"The checkpoint is {size / 1e6:.2f} MB, above the {MAX_CHECKPOINT_BYTES / 1e6:.0f} MB "
            "that can be committed; use a smaller ENCODER_EMBED_DIM or drop --fp32."
        )

    # Evaluate what was written, loaded the way official SAM checkpoints are.
    reloaded = build_sam(arch, output)
    metrics = evaluate_prompted_sam(
        reloaded,
        eval_seed,
        args.eval_images,
        data_cfg,
        show_progress=not args.no_progress,
        sample_fn=sample_fn,
    )
    if args.data == "v2":  # v1's own held-out stream too, to compare with v1 on its own data
        generic = evaluate_prompted_sam(reloaded, eval_seed, args.eval_images, data_cfg)
        metrics.update({f"generic_{k}": v for k, v in generic.items()})
    with open(history_path, "w") as f:
        json.dump(
            {"command": sys.argv[1:], "data": args.data, "history": history, "final": metrics},
            f,
            indent=1,
        )
    logger.info(
        f"Held-out ({args.eval_images} {args.data} images, seed {eval_seed}): " + _fmt(metrics)
    )
    for k, v in sorted(metrics.items()):
        logger.info(f"  {k}: {v:.4f}")
    print(
        f"RESULT box_miou={metrics['box_miou']:.4f} "
        f"center_point_miou={metrics['center_point_miou']:.4f} "
        f"center_point_single_miou={metrics['center_point_single_miou']:.4f} "
        f"point_miou={metrics['point_miou']:.4f} train_minutes={train_time / 60:.1f} "
        f"steps={steps_done}/{args.max_steps} checkpoint={os.path.relpath(output, REPO_ROOT)}"
    )
    return metrics


if __name__ == "__main__":
    main()
