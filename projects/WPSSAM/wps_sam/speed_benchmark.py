"""Measure WPS-SAM's speed ratios side by side in one run and write them as JSON.

The logic of ``tools/benchmark.py`` (its command line is :func:`main`):

    python tools/benchmark.py --config-file configs/wps_sam.yaml --output bench_vit_b.json
    python tools/benchmark.py --config-file configs/synthetic/wps_sam_tiny_box_q25_twostage.yaml \
        --output bench_tiny.json --iters 3
    python tools/benchmark.py --config-file configs/wps_sam.yaml --device cuda \
        --output bench_vit_b_bf16.json MODEL.SAM.ENCODER_AUTOCAST bf16

Random SAM and prompter weights and random images (speed does not depend on them), so no
checkpoint or dataset is needed. Every time is the median of --iters runs after one warm-up run.
Inference keeps every query (KEEP_RULE "part_score", SCORE_THRESHOLD -1), so it decodes
NUM_QUERIES prompts per image. The JSON keys (see docs/PERFORMANCE.md):

* ``train_ips_cached`` / ``train_ips_encoder``: training images per second (forward, backward,
  optimizer step; batch --train-batch) from cached embeddings / running the encoder per step;
  ``train_speedup`` is their ratio.
* ``encoder_s``: the image encoder on one image; ``infer_s``: end-to-end inference on one image
  (encoder, prompter, mask decoder on every prompt, upsampling, semantic merge);
  ``infer_over_encoder`` = infer_s / encoder_s (same precision). ``prompter_s`` and
  ``decoder_s`` break the difference down.
* ``cache_bytes_per_image``, ``cache_build_ips``: a cache of --cache-images synthetic images
  built with build_embedding_cache (image decoding, resizing, encoding, float16 shards);
  ``cache_build_over_encoder``: its time per image over the bare encoder's at the same batch.
* ``peak_rss_mb``, ``peak_gpu_mb`` (null on CPU), ``device``, ``config`` and the settings.
"""

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import tempfile
import time

import numpy as np
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from PIL import Image
from tqdm import tqdm

from .config import add_wps_sam_config
from .data.embedding_cache import build_embedding_cache
from .solver import build_wps_sam_optimizer

__all__ = ["KEYS", "Timer", "load_cfg", "main", "parse_args", "run"]

KEYS = (
    "train_ips_cached",
    "train_ips_encoder",
    "train_speedup",
    "infer_s",
    "encoder_s",
    "infer_over_encoder",
    "cache_bytes_per_image",
    "cache_build_ips",
    "peak_rss_mb",
    "peak_gpu_mb",
    "device",
    "config",
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--output", required=True, help="FILE.json to write")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: MODEL.DEVICE)")
    parser.add_argument("--iters", type=int, default=3, help="timed runs per measure (median)")
    parser.add_argument("--train-batch", type=int, default=None, help="default IMS_PER_BATCH")
    parser.add_argument("--num-parts", type=int, default=10, help="parts per training image")
    parser.add_argument("--cache-images", type=int, default=4, help="images in the cache build")
    parser.add_argument("--cache-batch", type=int, default=1, help="encoder batch of the build")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    return parser.parse_args(argv)


def load_cfg(args):
    cfg = get_cfg()
    add_wps_sam_config(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    cfg.MODEL.SAM.CHECKPOINT = ""  # timing only: random weights
    cfg.MODEL.WEIGHTS = ""
    if args.device:
        if args.device.startswith("cuda") and not torch.cuda.is_available():
            raise SystemExit(f"--device {args.device}: CUDA is not available")
        cfg.MODEL.DEVICE = args.device
    elif cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
    if cfg.MODEL.WPS_SAM.NUM_CLASSES <= 0:
        cfg.MODEL.WPS_SAM.NUM_CLASSES = 20
    # Keep every query: the mask decoder then runs on NUM_QUERIES prompts per image.
    cfg.MODEL.WPS_SAM.TEST.KEEP_RULE = "part_score"
    cfg.MODEL.WPS_SAM.TEST.SCORE_THRESHOLD = -1.0
    cfg.freeze()
    return cfg


class Timer:
    """Median wall time of a callable after one warm-up call (CUDA synchronised)."""

    def __init__(self, device, iters, bar):
        self.device, self.iters, self.bar = device, iters, bar

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def __call__(self, name, fn):
        self.bar.set_description(name)
        fn()
        times = []
        for _ in range(self.iters):
            self._sync()
            start = time.perf_counter()
            fn()
            self._sync()
            times.append(time.perf_counter() - start)
        self.bar.update(1)
        return statistics.median(times)


def _register_images(folder, n, size, seed=0):
    """n random size x size RGB JPEGs as a registered dataset (no annotations); returns its name."""
    rng = np.random.default_rng(seed)
    dicts = []
    for i in range(n):
        path = os.path.join(folder, f"bench_{i:05d}.jpg")
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
        dicts.append({"file_name": path, "height": size, "width": size, "image_id": i})
    name = f"wps_sam_benchmark_images_{os.getpid()}"
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
    DatasetCatalog.register(name, lambda: dicts)
    return name


def run(args):
    """Every measure of the module docstring, as a dict (``args``: :func:`parse_args`'s)."""
    cfg = load_cfg(args)
    torch.manual_seed(0)
    model = build_model(cfg)
    device = model.device
    size = cfg.MODEL.SAM.IMAGE_SIZE
    batch = args.train_batch or cfg.SOLVER.IMS_PER_BATCH
    num_classes = cfg.MODEL.WPS_SAM.NUM_CLASSES
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def make_input(with_instances=True):
        x = {
            "image": torch.randint(0, 256, (3, size, size), dtype=torch.uint8),
            "height": size,
            "width": size,
        }
        if with_instances:
            inst = Instances((size, size))
            xy = torch.rand(args.num_parts, 2) * size * 0.6
            inst.gt_boxes = Boxes(torch.cat([xy, xy + size * 0.3], dim=1))
            inst.gt_classes = torch.randint(0, num_classes, (args.num_parts,))
            x["instances"] = inst
        return x

    bar = tqdm(total=8, unit="measure", desc="benchmark")
    timer = Timer(device, args.iters, bar)
    result = {}
    model.eval()
    x = make_input(with_instances=False)
    with torch.no_grad():
        result["encoder_s"] = timer("encoder", lambda: model.image_embeddings([x]))
        embedding = model.image_embeddings([x])
        result["prompter_s"] = timer("prompter", lambda: model.run_prompter(embedding))
        tokens = model.run_prompter(embedding)["pred_prompts"][0]
        result["prompts"] = len(tokens)
        result["decoder_s"] = timer(
            "mask decoder",
            lambda: model.sam.decode(embedding[0], tokens, (size, size), (size, size)),
        )
        result["infer_s"] = timer("inference", lambda: model([x]))
    result["infer_over_encoder"] = result["infer_s"] / result["encoder_s"]

    model.train()
    optimizer = build_wps_sam_optimizer(cfg, model)
    images = [make_input() for _ in range(batch)]
    cached = [{**x, "image_embedding": embedding[0]} for x in images]

    def train_step(inputs):
        losses = model(inputs)
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()

    result["train_ips_cached"] = batch / timer("train, cached", lambda: train_step(cached))
    result["train_ips_encoder"] = batch / timer("train, encoder", lambda: train_step(images))
    result["train_speedup"] = result["train_ips_cached"] / result["train_ips_encoder"]

    model.eval()
    if args.cache_batch > 1:
        stack = [x] * args.cache_batch
        with torch.no_grad():
            per_batch = timer("encoder, cache batch", lambda: model.image_embeddings(stack))
        encoder_per_image = per_batch / args.cache_batch
    else:
        bar.update(1)
        encoder_per_image = result["encoder_s"]
    folder = tempfile.mkdtemp(prefix="wps_sam_benchmark_")
    try:
        name = _register_images(os.path.join(folder), args.cache_images, size)
        cache_dir = os.path.join(folder, "cache")
        bar.set_description("cache build")
        start = time.perf_counter()
        build_embedding_cache(cfg, model, [name], cache_dir=cache_dir, batch_size=args.cache_batch)
        if device.type == "cuda":
            torch.cuda.synchronize()
        build_s = time.perf_counter() - start
        bar.update(1)
        cache_bytes = sum(
            os.path.getsize(os.path.join(cache_dir, f)) for f in os.listdir(cache_dir)
        )
        DatasetCatalog.remove(name)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    bar.close()
    result["cache_bytes_per_image"] = cache_bytes / args.cache_images
    result["cache_build_ips"] = args.cache_images / build_s
    result["cache_build_over_encoder"] = (build_s / args.cache_images) / encoder_per_image
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["peak_gpu_mb"] = (
        torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
    )
    cpu = platform.processor() or platform.machine()
    result["device"] = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu ({cpu}, {torch.get_num_threads()} threads)"
    )
    result["config"] = args.config_file
    result["settings"] = {
        "opts": list(args.opts),
        "sam_variant": cfg.MODEL.SAM.VARIANT,
        "image_size": size,
        "encoder_autocast": cfg.MODEL.SAM.ENCODER_AUTOCAST,
        "mask_upsample": cfg.MODEL.SAM.MASK_UPSAMPLE,
        "train_batch": batch,
        "parts_per_image": args.num_parts,
        "iters": args.iters,
        "cache_images": args.cache_images,
        "cache_batch": args.cache_batch,
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    return result


def main(argv=None):
    """The command line of ``tools/benchmark.py``: run, write --output, print every key."""
    args = parse_args(argv)
    result = run(args)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(result, f, indent=1)
    width = max(len(k) for k in result)
    for key, value in result.items():
        text = f"{value:.4g}" if isinstance(value, float) else value
        print(f"{key:<{width}}  {text}")
    print(f"written: {args.output}")
    return result
