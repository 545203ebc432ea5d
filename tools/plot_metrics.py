#!/usr/bin/env python
"""Plot a training run's losses, learning rate and evaluation mIoU from its metrics.json.

    python tools/plot_metrics.py output/synthetic_benchmark/wps_sam_box_twostage
    python tools/plot_metrics.py run1/metrics.json --output curves.png

Writes ``<OUTPUT_DIR>/metrics.png`` by default (see docs/TOOLS.md).
"""

import argparse

from wps_sam.metrics_plot import plot_metrics


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="+", help="OUTPUT_DIR(s) of train_net.py or metrics.json")
    parser.add_argument("--output", default=None, help="the PNG (one input only)")
    args = parser.parse_args(argv)
    if args.output and len(args.path) > 1:
        parser.error("--output takes one input path")
    for path in args.path:
        print(plot_metrics(path, args.output))


if __name__ == "__main__":
    main()
