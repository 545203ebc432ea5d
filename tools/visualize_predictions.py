#!/usr/bin/env python
"""Save prediction overlays (image | ground truth | prediction, with a part legend).

    python tools/visualize_predictions.py --config-file configs/wps_sam.yaml \
        --dataset partimagenet_val --num-images 8 --output output/overlays MODEL.WEIGHTS model.pth

The logic is :func:`wps_sam.engine.prediction_overlays.visualize`.
"""

import argparse

import wps_sam  # noqa: F401  isort:skip
from wps_sam.cli_config import load_wps_sam_cfg  # noqa: E402
from wps_sam.engine.prediction_overlays import visualize  # noqa: E402, F401  (re-exported)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--dataset", default=None, help="default: the first of DATASETS.TEST")
    parser.add_argument("--num-images", type=int, default=4)
    parser.add_argument("--output", default="output/overlays")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    args = parser.parse_args(argv)
    cfg = load_wps_sam_cfg(args.config_file, args.opts)
    for p in visualize(cfg, args.dataset or cfg.DATASETS.TEST[0], args.output, args.num_images):
        print(p)


if __name__ == "__main__":
    main()
