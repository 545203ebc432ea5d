#!/usr/bin/env python
"""Encode every image of the train/test datasets once with the frozen SAM image encoder.

    python tools/cache_embeddings.py --config-file configs/wps_sam.yaml \
        INPUT.EMBEDDING_CACHE_DIR datasets/cache/sam_vit_b

Training and evaluation with the same INPUT.EMBEDDING_CACHE_DIR then skip the encoder.
"""

import argparse

import wps_sam  # noqa: F401  isort:skip
from detectron2.modeling import build_model  # noqa: E402

from wps_sam.cli_config import load_wps_sam_cfg  # noqa: E402
from wps_sam.data.embedding_cache import build_embedding_cache  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--datasets", nargs="*", help="default: DATASETS.TRAIN + DATASETS.TEST")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    args = parser.parse_args()
    cfg = load_wps_sam_cfg(args.config_file, args.opts)
    names = args.datasets or list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST)
    counts = build_embedding_cache(cfg, build_model(cfg), names, batch_size=args.batch_size)
    print(f"{cfg.INPUT.EMBEDDING_CACHE_DIR}: {counts}")


if __name__ == "__main__":
    main()
