#!/usr/bin/env python
"""Research tool (not a user tool): diagnostics of why the prompter learns slowly on CPU budgets,
outside detectron2's trainer (docs/BENCHMARK.md cites its figures).

    # the prompter's losses on the training set, a loop without detectron2's trainer
    python tools/research/diagnose_prompter.py train --iters 600 --input embedding
    python tools/research/diagnose_prompter.py train --iters 500 --input oracle \
        MODEL.WPS_SAM.ENC_LAYERS 2
    python tools/research/diagnose_prompter.py train --iters 300 --num-images 8 --lr 2e-4  # overfit
    # how much part identity the tiny SAM's embeddings carry (per-pixel probes trained on the full
    # masks: linear, 2 convs, dilated convs, attention), for a number of iterations or seconds each
    python tools/research/diagnose_prompter.py probe --iters 600
    python tools/research/diagnose_prompter.py probe --seconds 200 --probes 2,3
    # how much of the constant prediction's loss a coarse localisation of the corners removes
    python tools/research/diagnose_prompter.py pe-tolerance
    # a trained prompter: part mIoU on training and val images, prompt spread over queries/images
    python tools/research/diagnose_prompter.py inspect --config-file CONFIG --eval-images 100 \
        MODEL.WEIGHTS output/.../model_final.pth

``--input oracle`` replaces every image embedding by the ground-truth part label map (one-hot,
area-downsampled to the embedding's grid, projected to 256 channels by a fixed random matrix): a
perfectly semantic input, to tell weak features from slow set-prediction learning.
"""

import argparse
import random
import time

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

import wps_sam  # noqa: F401  isort:skip
from detectron2.data import DatasetCatalog  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402
from detectron2.structures import BoxMode  # noqa: E402

from wps_sam.cli_config import load_wps_sam_cfg  # noqa: E402
from wps_sam.data import WPSSAMDatasetMapper  # noqa: E402
from wps_sam.evaluation import PartSemSegEvaluator  # noqa: E402
from wps_sam.prompter_diagnostics import AttentionOverCells, oracle_embedding  # noqa: E402

CONFIG = "configs/synthetic/wps_sam_tiny_box_q25.yaml"


def train(args):
    cfg = load_wps_sam_cfg(args.config_file, args.opts)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    model = build_model(cfg).train()
    # The evaluation mapper also reads the label maps, which only the oracle input needs.
    mapper = WPSSAMDatasetMapper(cfg, is_train=args.input != "oracle")
    dicts = DatasetCatalog.get(cfg.DATASETS.TRAIN[0])[: args.num_images]
    data = [mapper(d) for d in tqdm(dicts, desc="loading")]
    if args.input == "oracle":
        num_labels = cfg.MODEL.WPS_SAM.NUM_CLASSES + 1  # parts + background
        side = cfg.MODEL.SAM.IMAGE_SIZE // cfg.MODEL.SAM.PATCH_SIZE
        dim = cfg.MODEL.SAM.PROMPT_EMBED_DIM
        projection = torch.randn(dim, num_labels) / num_labels**0.5
        for x in data:
            x["image_embedding"] = oracle_embedding(x.pop("sem_seg"), num_labels, projection, side)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=args.lr, weight_decay=cfg.SOLVER.WEIGHT_DECAY)
    sums, start = {}, time.time()
    for it in range(args.iters):
        for group in optimizer.param_groups:
            group["lr"] = args.lr * min(1.0, (it + 1) / args.warmup)
        losses = model(random.sample(data, cfg.SOLVER.IMS_PER_BATCH))
        optimizer.zero_grad()
        sum(losses.values()).backward()
        torch.nn.utils.clip_grad_norm_(params, args.clip)
        optimizer.step()
        for key in ("loss_cls", "loss_prompt", "loss_dense_cls", "loss_dense_box"):
            if key in losses:
                sums[key] = sums.get(key, 0.0) + float(losses[key].detach())
        if (it + 1) % args.log_period == 0:
            means = {k: round(v / args.log_period, 3) for k, v in sums.items()}
            print(f"iter {it + 1} ({time.time() - start:.0f} s): {means}", flush=True)
            sums = {}
    model.eval()
    if args.eval_images:
        oracle_projection = projection if args.input == "oracle" else None
        evaluate(model, cfg, args, oracle_projection)
        for threshold in args.part_score_thresholds:
            model.keep_rule, model.score_threshold = "part_score", threshold
            print(f"KEEP_RULE part_score, SCORE_THRESHOLD {threshold}:", end=" ")
            evaluate(model, cfg, args, oracle_projection)
    prompt_spread(model, data)


def prompt_spread(model, data, label=""):
    """Std of the predicted prompts over the queries and over the images of ``data`` (<= 16)."""
    with torch.no_grad():
        out = model.run_prompter(torch.stack([x["image_embedding"] for x in data[:16]]).float())
    prompts = out["pred_prompts"]
    print(
        f"{label}prompt std over queries {prompts.std(1).mean():.4f}, "
        f"over images {prompts.std(0).mean():.4f} (a prompter that follows the image has the "
        "second well above the ~0.01 of one that does not)"
    )


def inspect(args):
    """A trained model (MODEL.WEIGHTS): does it fit its training images, does it generalise, do its
    prompts follow the image?"""
    from wps_sam.engine import WPSSAMCheckpointer

    cfg = load_wps_sam_cfg(args.config_file, args.opts)
    model = build_model(cfg).eval()
    WPSSAMCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    for dataset in (cfg.DATASETS.TRAIN[0], cfg.DATASETS.TEST[0]):
        mapper = WPSSAMDatasetMapper(cfg, is_train=False)
        data = [mapper(d) for d in DatasetCatalog.get(dataset)[:16]]
        prompt_spread(model, data, f"{dataset}: ")
        evaluate(model, cfg, args, dataset=dataset)


@torch.no_grad()
def evaluate(model, cfg, args, projection=None, dataset=None):
    """Part mIoU (the benchmark's, :class:`PartSemSegEvaluator`) on the first ``--eval-images``
    of ``dataset`` (default: the test split). With ``projection`` (oracle input) the prompter
    reads the oracle map of each image and SAM's decoder its real embedding; else this is the
    model's own inference."""
    dataset = dataset or cfg.DATASETS.TEST[0]
    mapper = WPSSAMDatasetMapper(cfg, is_train=False)
    evaluator = PartSemSegEvaluator(dataset, distributed=False)
    evaluator.reset()
    num_labels = cfg.MODEL.WPS_SAM.NUM_CLASSES + 1
    side = cfg.MODEL.SAM.IMAGE_SIZE // cfg.MODEL.SAM.PATCH_SIZE
    kept = 0
    dicts = DatasetCatalog.get(dataset)[: args.eval_images]
    for d in tqdm(dicts, desc="evaluating"):
        x = mapper(d)
        embedding = x["image_embedding"][None].float()
        prompter_input = embedding
        if projection is not None:
            prompter_input = oracle_embedding(x["sem_seg"], num_labels, projection, side)[None]
        tokens, classes, scores = model.select_prompts(model.run_prompter(prompter_input), 0)
        kept += len(tokens)
        size = (x["height"], x["width"])
        logits = embedding.new_zeros((0, *size))
        if len(tokens):
            logits = model.sam.decode(embedding[0], tokens, model.sam.input_size(x), size)
        evaluator.process([d], [{"sem_seg": model.semantic_map(logits, classes, scores)}])
    part_miou = evaluator.evaluate()["sem_seg"]["mIoU-parts"]
    print(
        f"part mIoU {part_miou:.2f} on {len(dicts)} images of {dataset} "
        f"({kept / len(dicts):.1f} prompts kept per image)"
    )


def probe(args):
    cfg = load_wps_sam_cfg(args.config_file, args.opts)
    torch.manual_seed(args.seed)

    mapper = WPSSAMDatasetMapper(cfg, is_train=False)  # cached embedding + label map

    def load(name):
        data = [mapper(d) for d in tqdm(DatasetCatalog.get(name), desc=name)]
        if "image_embedding" not in data[0]:
            raise SystemExit(
                f"No cached embeddings in {cfg.INPUT.EMBEDDING_CACHE_DIR!r}: run "
                "tools/cache_embeddings.py (or the main job) with this config first"
            )
        return (
            torch.stack([x["image_embedding"] for x in data]),
            torch.stack([x["sem_seg"] for x in data]),
        )

    x_train, y_train = load(cfg.DATASETS.TRAIN[0])
    x_val, y_val = load(cfg.DATASETS.TEST[0])
    num_labels = cfg.MODEL.WPS_SAM.NUM_CLASSES + 1
    dim, size = x_train.shape[1], y_train.shape[-1]
    probes = {
        "linear (1x1 conv)": torch.nn.Conv2d(dim, num_labels, 1),
        "two 3x3 convs": torch.nn.Sequential(
            torch.nn.Conv2d(dim, dim, 3, padding=1),
            torch.nn.GELU(),
            torch.nn.Conv2d(dim, dim, 3, padding=1),
            torch.nn.GELU(),
            torch.nn.Conv2d(dim, num_labels, 1),
        ),
        # The main job's context module: five 3x3 convs that together see the whole 16x16 grid.
        "dilated 3x3 convs (1,2,4,8,1)": torch.nn.Sequential(
            *[
                layer
                for d in (1, 2, 4, 8, 1)
                for layer in (torch.nn.Conv2d(dim, dim, 3, padding=d, dilation=d), torch.nn.GELU())
            ],
            torch.nn.Conv2d(dim, num_labels, 1),
        ),
        # The paper's kind of context: attention over all cells (two encoder layers).
        "two 3x3 convs + 2 attention layers": torch.nn.Sequential(
            torch.nn.Conv2d(dim, dim, 3, padding=1),
            torch.nn.GELU(),
            AttentionOverCells(dim, 2),
            torch.nn.Conv2d(dim, num_labels, 1),
        ),
    }
    if args.probes:
        chosen = [list(probes)[int(i)] for i in args.probes.split(",")]
        probes = {name: probes[name] for name in chosen}
    for name, net in probes.items():
        optimizer = torch.optim.Adam(net.parameters(), 1e-3 if name.startswith("linear") else 3e-4)
        start, iters = time.time(), 0
        progress = tqdm(total=args.seconds or args.iters, desc=name)
        while (time.time() - start < args.seconds) if args.seconds else iters < args.iters:
            idx = torch.randint(0, len(x_train), (16,))
            logits = F.interpolate(net(x_train[idx]), size=size, mode="bilinear")
            loss = F.cross_entropy(logits, y_train[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            iters += 1
            progress.n = round(time.time() - start) if args.seconds else iters
            progress.refresh()
        progress.close()
        with torch.no_grad():
            pred = torch.cat(
                [
                    F.interpolate(net(x_val[i : i + 50]), size=size, mode="bilinear").argmax(1)
                    for i in range(0, len(x_val), 50)
                ]
            )
        ious = [
            ((pred == c) & (y_val == c)).sum().item() / ((pred == c) | (y_val == c)).sum().item()
            for c in range(num_labels - 1)
            if (y_val == c).any()
        ]
        print(
            f"{name}: part mIoU {100 * np.mean(ious):.1f} on {cfg.DATASETS.TEST[0]} after {iters} "
            f"iterations ({time.time() - start:.0f} s)"
        )


def pe_tolerance(args):
    cfg = load_wps_sam_cfg(args.config_file, args.opts)
    torch.manual_seed(args.seed)
    prompt_encoder = build_model(cfg).sam.prompt_encoder
    boxes = torch.tensor(
        [
            BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS)
            for d in DatasetCatalog.get(cfg.DATASETS.TEST[0])
            for a in d["annotations"]
        ],
        dtype=torch.float32,
    )

    def encode(b):
        return prompt_encoder(points=None, boxes=b, masks=None)[0]

    with torch.no_grad():
        target = encode(boxes)
        constant = F.smooth_l1_loss(target.mean(0, keepdim=True).expand_as(target), target).item()
        print(f"{len(boxes)} part boxes; constant (mean) prompt: smooth-L1 {constant:.4f}")
        for sigma in (4, 8, 16, 32, 64):
            # The best prediction of a model that knows each corner within ~sigma px: the mean
            # encoding over that uncertainty.
            blurred = torch.stack(
                [encode(boxes + torch.randn_like(boxes) * sigma) for _ in range(16)]
            ).mean(0)
            loss = F.smooth_l1_loss(blurred, target).item()
            print(
                f"corners known within ~{sigma:2d} px: {loss:.4f}, "
                f"{100 * (1 - loss / constant):.0f}% of the constant's loss removed"
            )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("train", "probe", "pe-tolerance", "inspect"):
        p = sub.add_parser(name)
        p.add_argument("--config-file", default=CONFIG)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
        if name in ("train", "probe"):
            p.add_argument("--iters", type=int, default=600)
        if name == "probe":
            p.add_argument(
                "--seconds", type=float, default=0, help="train each probe this long instead"
            )
            p.add_argument(
                "--probes",
                default="",
                help="indices of the probes to run, e.g. 2,3 (0 linear, 1 two convs, 2 dilated "
                "convs, 3 convs + attention; default all)",
            )
        if name == "inspect":
            p.add_argument("--eval-images", type=int, default=100, help="images per split")
        if name == "train":
            p.add_argument("--input", choices=["embedding", "oracle"], default="embedding")
            p.add_argument("--lr", type=float, default=5e-4)
            p.add_argument("--warmup", type=int, default=50)
            p.add_argument("--clip", type=float, default=0.1, help="joint gradient-norm clip")
            p.add_argument("--log-period", type=int, default=50)
            p.add_argument("--num-images", type=int, help="train on the first N images only")
            p.add_argument(
                "--eval-images", type=int, default=0, help="then score part mIoU on N val images"
            )
            p.add_argument(
                "--part-score-thresholds",
                type=lambda text: [float(v) for v in text.split(",")],
                default=[],
                help="also score with TEST.KEEP_RULE part_score at these SCORE_THRESHOLDs: 0.2,0.3",
            )
    args = parser.parse_args()
    commands = {"train": train, "probe": probe, "pe-tolerance": pe_tolerance, "inspect": inspect}
    commands[args.command](args)


if __name__ == "__main__":
    main()
