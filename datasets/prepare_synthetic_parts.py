#!/usr/bin/env python
"""Generate the synthetic part benchmark in the PartImageNet layout.

    python datasets/prepare_synthetic_parts.py        # defaults: 2000/300/300 images, 256 px
    python datasets/prepare_synthetic_parts.py --num-train 500 --image-size 320 --overwrite

Writes ``<root>/images/<split>/*.JPEG`` and ``<root>/annotations/<split>/{<split>.json, *.png}``
(see ``wps_sam/synthetic/parts.py`` and ``datasets/README.md``); ``<root>`` defaults to
``$DETECTRON2_DATASETS/synthetic_parts`` (``./datasets/synthetic_parts``), where the registered
datasets ``synthetic_parts_{train,val,test}`` look (registering them generates nothing: loading a
missing split names this command). A split whose JSON exists is skipped unless ``--overwrite`` is
given; one written by another version of the generator is drawn again with the settings it was
made with (its number of images, size and seed). The same arguments always give byte-identical
files.
"""

import argparse
import json
import logging
import os
import sys
import time

import wps_sam  # noqa: F401  isort:skip  (compatibility layer before detectron2)
from tabulate import tabulate

from wps_sam.data.datasets.register_synthetic_parts import synthetic_parts_root
from wps_sam.synthetic.parts import (
    DEFAULT_IMAGE_SIZE,
    DEFAULT_SEED,
    DEFAULT_SPLIT_SIZES,
    GENERATOR_VERSION,
    SYNTHETIC_PART_CLASSES,
    generate_synthetic_parts,
    synthetic_split_paths,
)

SPLITS = ("train", "val", "test")


def existing_settings(root, split):
    """(version, num_images, image_size, seed) recorded by the split's JSON, or None."""
    json_file = synthetic_split_paths(root, split)["json_file"]
    if not os.path.isfile(json_file):
        return None
    with open(json_file) as f:
        info = json.load(f).get("info", {})
    return tuple(info.get(k) for k in ("version", "num_images", "image_size", "seed"))


def parse_args(argv=None):
    default_root = synthetic_parts_root()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--root", default=default_root, help=f"output folder (default: {default_root})")
    for split in SPLITS:
        p.add_argument(
            f"--num-{split}",
            type=int,
            default=DEFAULT_SPLIT_SIZES[split],
            help=f"number of {split} images (default: {DEFAULT_SPLIT_SIZES[split]})",
        )
    p.add_argument("--image-size", type=int, default=DEFAULT_IMAGE_SIZE, help="image side in px")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="base seed (split seeds derive)")
    p.add_argument("--splits", nargs="+", choices=SPLITS, default=list(SPLITS))
    p.add_argument(
        "--workers", type=int, default=None, help="worker processes (default: up to 2; 0 = none)"
    )
    p.add_argument("--overwrite", action="store_true", help="regenerate splits that already exist")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    start = time.perf_counter()
    summaries, skipped = [], []
    for split in args.splits:
        json_file = synthetic_split_paths(args.root, split)["json_file"]
        settings = dict(
            num_images=getattr(args, f"num_{split}"), image_size=args.image_size, seed=args.seed
        )
        existing = existing_settings(args.root, split)
        if existing is not None and not args.overwrite:
            version, num_images, image_size, seed = existing
            if version == GENERATOR_VERSION:
                skipped.append(split)
                print(f"[{split}] {json_file} exists: skipped (pass --overwrite to regenerate).")
                continue
            # Derived data that this code would draw differently: redraw it as it was made.
            settings = dict(
                num_images=DEFAULT_SPLIT_SIZES[split] if num_images is None else num_images,
                image_size=DEFAULT_IMAGE_SIZE if image_size is None else image_size,
                seed=DEFAULT_SEED if seed is None else seed,
            )
            print(
                f"[{split}] {json_file} was written by generator version {version}, the code is "
                f"version {GENERATOR_VERSION}: regenerating it with the settings it was made with "
                f"({settings})."
            )
        summaries.append(
            generate_synthetic_parts(args.root, split, num_workers=args.workers, **settings)
        )
    if not summaries:
        print("Nothing generated.")
        return 0

    rows = [
        [
            s["split"],
            s["num_images"],
            s["num_annotations"],
            s["images_without_annotations"],
            s["occluded_instances"],
            s["replaced_polygons"],
            f"{s['seconds']:.1f}",
        ]
        for s in summaries
    ]
    headers = ["split", "images", "part annotations", "images w/o parts"]
    headers += ["fully hidden parts (no ann.)", "1-2 px polygons -> box", "seconds"]
    print(tabulate(rows, headers=headers, tablefmt="github"))
    per_class = [
        [i, name]
        + [s["annotations_per_class"][name] for s in summaries]
        + [f"{100 * s['pixel_fraction_per_class'][name]:.2f}" for s in summaries]
        for i, name in enumerate(SYNTHETIC_PART_CLASSES)
    ]
    bg = len(SYNTHETIC_PART_CLASSES)
    per_class.append(
        [bg, "background"]
        + ["-" for _ in summaries]
        + [f"{100 * s['pixel_fraction_per_class']['background']:.2f}" for s in summaries]
    )
    headers = ["id", "class"] + [f"{s['split']} anns" for s in summaries]
    headers += [f"{s['split']} px %" for s in summaries]
    print(tabulate(per_class, headers=headers, tablefmt="github"))
    total = sum(s["num_images"] for s in summaries)
    print(
        f"Generated {total} images in {time.perf_counter() - start:.1f}s under {args.root}"
        + (f" (skipped existing: {', '.join(skipped)})" if skipped else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
