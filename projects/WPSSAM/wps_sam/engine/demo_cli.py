"""The command line of ``demo/demo.py`` (parser, output names, the loop over the input files),
so that it can be called and tested as ``wps_sam.engine.demo_cli.main(argv)``."""

import argparse
import os
import time

from detectron2.utils.logger import setup_logger
from tqdm import tqdm

from ..cli_config import load_wps_sam_cfg
from .part_demo import IMAGE_EXTENSIONS, PartSegmentationDemo, collect_images

__all__ = ["get_parser", "main", "output_bases"]


def get_parser():
    parser = argparse.ArgumentParser(description="WPS-SAM part segmentation demo")
    parser.add_argument("--config-file", required=True, metavar="FILE", help="path to config file")
    parser.add_argument(
        "--input",
        nargs="+",
        required=True,
        help="image files, folders (their images) or glob patterns, e.g. 'photos/*.jpg'",
    )
    parser.add_argument(
        "--output",
        default="output/demo",
        help="a folder for the outputs, or a file name (.png/.jpg) when there is one input image",
    )
    parser.add_argument(
        "--confidence-threshold",
        type=float,
        default=None,
        help="minimum part-prompt score to keep (MODEL.WPS_SAM.TEST.SCORE_THRESHOLD; "
        "default: the config's)",
    )
    parser.add_argument("--save-label-png", action="store_true", help="also write the label map")
    parser.add_argument(
        "--save-part-masks", action="store_true", help="also write one mask PNG per kept part"
    )
    parser.add_argument(
        "--metadata", default=None, help="dataset whose part names to show (default DATASETS.TEST)"
    )
    parser.add_argument(
        "--opts",
        default=[],
        nargs=argparse.REMAINDER,
        help="config overrides as KEY VALUE pairs, e.g. MODEL.WEIGHTS model_final.pth",
    )
    return parser


def output_bases(paths, output):
    """Output path without extension for each input image (unique names in a folder)."""
    if output.lower().endswith(IMAGE_EXTENSIONS):
        if len(paths) != 1:
            raise SystemExit(
                f"--output {output} is a file name but {len(paths)} images were given: pass a "
                "folder as --output."
            )
        os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
        return [os.path.splitext(output)[0]]
    os.makedirs(output, exist_ok=True)
    bases, used = [], set()
    for p in paths:
        stem = os.path.splitext(os.path.basename(p))[0]
        name, n = stem, 1
        while name in used:
            n += 1
            name = f"{stem}_{n}"
        used.add(name)
        bases.append(os.path.join(output, name))
    return bases


def main(argv=None):
    args = get_parser().parse_args(argv)
    logger = setup_logger(name="wps_sam")
    opts = list(args.opts)
    if args.confidence_threshold is not None:
        opts += ["MODEL.WPS_SAM.TEST.SCORE_THRESHOLD", str(args.confidence_threshold)]
    cfg = load_wps_sam_cfg(args.config_file, opts)
    paths, unmatched = collect_images(args.input)
    for arg in unmatched:
        logger.warning(f"--input {arg!r} matches no file: skipped")
    if not paths:
        raise SystemExit(f"No input image found in {args.input}.")
    bases = output_bases(paths, args.output)
    demo = PartSegmentationDemo(cfg, metadata_name=args.metadata)
    failed, written = [], 0
    start = time.perf_counter()
    for path, base in tqdm(list(zip(paths, bases)), desc="demo", unit="image"):
        try:
            res = demo.run_on_file(path, base, args.save_label_png, args.save_part_masks)
        except (OSError, ValueError) as e:
            failed.append((path, str(e)))
            tqdm.write(f"[demo] skipped {path}: {e}")
            continue
        written += 1
        tqdm.write(
            f"[demo] {path}: {res['num_parts']} part prompts, parts {res['parts']} -> "
            f"{res['overlay']}"
        )
    seconds = time.perf_counter() - start
    print(
        f"[demo] {len(paths)} images in {seconds:.1f} s: {written} written to {args.output}, "
        f"{len(failed)} skipped"
        + (f", {len(unmatched)} inputs matched nothing" if unmatched else "")
    )
    for path, err in failed:
        print(f"    skipped {path}: {err}")
    return 0 if written else 1
