#!/usr/bin/env python
"""Measure WPS-SAM's speed ratios side by side in one run and write them as JSON.

    python tools/benchmark.py --config-file configs/wps_sam.yaml --output bench_vit_b.json
    python tools/benchmark.py --config-file configs/synthetic/wps_sam_tiny_box_q25_twostage.yaml \
        --output bench_tiny.json --iters 3
    python tools/benchmark.py --config-file configs/wps_sam.yaml --device cuda \
        --output bench_vit_b_bf16.json MODEL.SAM.ENCODER_AUTOCAST bf16

The measures, their JSON keys and the flags are those of :mod:`wps_sam.speed_benchmark` (see its
docstring and docs/PERFORMANCE.md); this script is its command line.
"""

import wps_sam  # noqa: F401  isort:skip
from wps_sam.speed_benchmark import main  # noqa: E402

if __name__ == "__main__":
    main()
