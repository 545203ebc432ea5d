#!/usr/bin/env python
"""Write SAM pseudo-labels (paper Table 5): the frozen SAM prompted with every training image's
ground-truth part boxes, merged into a PNG label map per image (docs/BASELINES.md).

    python tools/generate_pseudo_labels.py                              # synthetic benchmark
    python tools/generate_pseudo_labels.py --dataset partimagenet_train \
        --config-file configs/partimagenet/sam_vit_b_gt_box.yaml

Resumable (only missing label maps are written; writes are atomic), batched, with a progress bar.
Prints and writes (``<output>/pseudo_label_stats.json``) the pseudo-labels' mIoU against the real
label maps when the dataset has them. ``<dataset>_sam_pseudo`` then trains any detectron2
semantic-segmentation model on them (configs/synthetic/pseudo_label_semseg_r18_fpn.yaml).
"""

import argparse
import json
import os

import wps_sam  # noqa: F401  isort:skip
from detectron2.modeling import build_model  # noqa: E402
from detectron2.utils.logger import setup_logger  # noqa: E402

from wps_sam.cli_config import load_wps_sam_cfg  # noqa: E402
from wps_sam.data.pseudo_labels import (  # noqa: E402
    default_pseudo_label_dir,
    generate_pseudo_labels,
    pseudo_label_quality,
)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config-file",
        default="configs/synthetic/sam_tiny_gt_box.yaml",
        help="a SAM + ground-truth prompts config (MODEL.META_ARCHITECTURE SAMGTPrompted, "
        "MODEL.GT_PROMPTED_SAM.PROMPT box)",
    )
    parser.add_argument("--dataset", default="synthetic_parts_train", help="registered dataset")
    parser.add_argument(
        "--output", default="", help="label-map folder (default: <label-map folder>_sam_pseudo)"
    )
    parser.add_argument("--batch-size", type=int, default=None, help="PSEUDO_LABELS.BATCH_SIZE")
    parser.add_argument("--overlap", choices=["score", "ignore"], default=None, help="see docs")
    parser.add_argument("--overwrite", action="store_true", help="rewrite another SAM's labels")
    parser.add_argument("--max-images", type=int, default=None, help="stop after this many")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides")
    args = parser.parse_args(argv)
    setup_logger(name="wps_sam")
    cfg = load_wps_sam_cfg(args.config_file, args.opts)
    model = build_model(cfg)
    output = args.output or default_pseudo_label_dir(args.dataset)
    counts = generate_pseudo_labels(
        cfg,
        model,
        args.dataset,
        output,
        batch_size=args.batch_size or cfg.PSEUDO_LABELS.BATCH_SIZE,
        overlap=args.overlap or cfg.PSEUDO_LABELS.OVERLAP,
        overwrite=args.overwrite,
        max_images=args.max_images,
    )
    quality = pseudo_label_quality(args.dataset, output)
    stats = {**counts, "dataset": args.dataset, "quality": quality}
    with open(os.path.join(output, "pseudo_label_stats.json"), "w") as f:
        json.dump(stats, f, indent=1)
    print(json.dumps(stats, indent=1))
    if quality:
        print(
            f"[pseudo-labels] {quality['num_images']} images: mIoU {quality['mIoU']:.2f}, part "
            f"mIoU {quality['mIoU-parts']:.2f} vs the real label maps"
        )
    return stats


if __name__ == "__main__":
    main()
