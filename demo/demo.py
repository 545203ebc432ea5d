#!/usr/bin/env python
"""WPS-SAM demo: part segmentation of image files (detectron2's demo/demo.py conventions).

    python demo/demo.py --config-file configs/synthetic/wps_sam_tiny_box_q25_twostage.yaml \
        --input photos/ "more/*.jpg" one.png --output output/demo \
        --confidence-threshold 0.3 --save-label-png --save-part-masks \
        --opts MODEL.WEIGHTS output/synthetic_benchmark/wps_sam_box_twostage/model_final.pth

Writes ``<output>/<image name>.png`` (image | prediction, part names and a legend), optionally
``<name>_labels.png`` and ``<name>_parts/*.png``. Unreadable files are reported and skipped; a
summary ends the run (exit status 1 only when no image could be processed). Runs on the CPU when
CUDA is absent. See docs/TOOLS.md. The logic is :mod:`wps_sam.engine.demo_cli`.
"""

import sys

import wps_sam  # noqa: F401  isort:skip
from wps_sam.engine.demo_cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
