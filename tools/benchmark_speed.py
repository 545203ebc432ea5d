#!/usr/bin/env python
"""Time WPS-SAM's stages (frozen encoder, prompter, mask decoder, training step) and peak memory.

    python tools/benchmark_speed.py --config-file configs/wps_sam.yaml            # ViT-B, 1024²
    python tools/benchmark_speed.py --config-file configs/synthetic/wps_sam_tiny_box_q25.yaml

Random weights and random images: speed does not depend on them, so no checkpoint is needed.
Prints a table (median seconds over --repeats runs after --warmup runs).
"""

import argparse
import platform
import resource
import statistics
import time

import torch

import wps_sam  # noqa: F401  isort:skip
from detectron2.config import get_cfg  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402
from detectron2.structures import Boxes, Instances  # noqa: E402
from tabulate import tabulate  # noqa: E402

from wps_sam import add_wps_sam_config  # noqa: E402
from wps_sam.solver import build_wps_sam_optimizer  # noqa: E402


def timed(fn, warmup, repeats, device):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--batch-size", type=int, default=None, help="default SOLVER.IMS_PER_BATCH")
    parser.add_argument("--num-parts", type=int, default=10, help="parts per training image")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    args = parser.parse_args()
    cfg = get_cfg()
    add_wps_sam_config(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    cfg.MODEL.SAM.CHECKPOINT = ""  # timing only
    cfg.MODEL.WEIGHTS = ""
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
    if cfg.MODEL.WPS_SAM.NUM_CLASSES <= 0:
        cfg.MODEL.WPS_SAM.NUM_CLASSES = 20
    model = build_model(cfg)
    device = model.device
    size, batch = cfg.MODEL.SAM.IMAGE_SIZE, args.batch_size or cfg.SOLVER.IMS_PER_BATCH

    def make_input():
        inst = Instances((size, size))
        xy = torch.rand(args.num_parts, 2) * size * 0.6
        inst.gt_boxes = Boxes(torch.cat([xy, xy + size * 0.3], dim=1))
        inst.gt_classes = torch.randint(0, cfg.MODEL.WPS_SAM.NUM_CLASSES, (args.num_parts,))
        image = torch.randint(0, 256, (3, size, size), dtype=torch.uint8)
        return {"image": image, "height": size, "width": size, "instances": inst}

    x = make_input()
    model.eval()
    with torch.no_grad():
        embedding = model.image_embeddings([x])
        one = [{**x, "image_embedding": embedding[0]}]
        outputs = model.prompter(embedding)
        tokens = outputs["pred_prompts"][0]
    rows = []
    rows.append(
        [
            "image encoder, 1 image",
            timed(lambda: model.image_embeddings([x]), args.warmup, args.repeats, device),
        ]
    )
    with torch.no_grad():
        rows.append(
            [
                "prompter, 1 image",
                timed(lambda: model.prompter(embedding), args.warmup, args.repeats, device),
            ]
        )
        rows.append(
            [
                f"mask decoder, {len(tokens)} prompts",
                timed(
                    lambda: model.decode_masks(embedding[0], tokens, (size, size), (size, size)),
                    args.warmup,
                    args.repeats,
                    device,
                ),
            ]
        )
        rows.append(
            [
                "inference from a cached embedding",
                timed(lambda: model(one), args.warmup, args.repeats, device),
            ]
        )
    model.train()
    optimizer = build_wps_sam_optimizer(cfg, model)
    cached_batch = [{**make_input(), "image_embedding": embedding[0]} for _ in range(batch)]

    def train_step():
        losses = model(cached_batch)
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()

    rows.append(
        [
            f"training step, batch {batch}, cached embeddings",
            timed(train_step, args.warmup, args.repeats, device),
        ]
    )
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    print(
        f"{args.config_file}: SAM {cfg.MODEL.SAM.VARIANT} at {size}px on {device} "
        f"({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads); "
        f"trainable {trainable / 1e6:.2f} M, frozen {frozen / 1e6:.2f} M parameters"
    )
    print(tabulate(rows, headers=["stage", "seconds (median)"], floatfmt=".4f", tablefmt="github"))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory: {peak:.0f} MB")
    if device.type == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**20:.0f} MB")


if __name__ == "__main__":
    main()
