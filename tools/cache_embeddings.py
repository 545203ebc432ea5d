#!/usr/bin/env python
"""Encode every image of the train/test datasets once with the frozen SAM image encoder.

    python tools/cache_embeddings.py --config-file configs/wps_sam.yaml \
        INPUT.EMBEDDING_CACHE_DIR datasets/cache/sam_vit_b
    python tools/cache_embeddings.py --num-gpus 4 ...   # each process encodes its share

Writes float16 shards (see docs/PERFORMANCE.md). Rerunning it resumes a killed build, re-encodes
images that changed and replaces invalid (truncated) shards. Training and evaluation with the same
INPUT.EMBEDDING_CACHE_DIR then skip the encoder.
"""

import argparse

import wps_sam  # noqa: F401  isort:skip
from detectron2.modeling import build_model  # noqa: E402
from detectron2.utils import comm  # noqa: E402

from wps_sam.cli_config import load_wps_sam_cfg  # noqa: E402
from wps_sam.data.embedding_cache import build_embedding_cache  # noqa: E402
from wps_sam.distributed import launch  # noqa: E402


def run(args):
    cfg = load_wps_sam_cfg(args.config_file, args.opts)
    names = args.datasets or list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST)
    counts = build_embedding_cache(
        cfg,
        build_model(cfg),
        names,
        batch_size=args.batch_size,
        rebuild_stale=args.rebuild_stale,
        shard_size=args.shard_size,
    )
    if comm.is_main_process():
        print(f"{cfg.INPUT.EMBEDDING_CACHE_DIR}: {counts}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--datasets", nargs="*", help="default: DATASETS.TRAIN + DATASETS.TEST")
    parser.add_argument("--batch-size", type=int, default=8, help="images per encoder call")
    parser.add_argument("--shard-size", type=int, default=128, help="images per shard file")
    parser.add_argument("--num-gpus", type=int, default=1, help="processes (GPUs, else CPUs)")
    parser.add_argument(
        "--rebuild-stale",
        action="store_true",
        help="empty a cache made by another SAM instead of refusing it",
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    args = parser.parse_args()
    launch(run, args.num_gpus, dist_url="auto", args=(args,))


if __name__ == "__main__":
    main()
