#!/usr/bin/env python
"""Long-run rows of the synthetic benchmark: convergence curves at >= 100 epochs.

Each row trains one recipe for 100 epochs over the first 1000 training images (its config in
``configs/synthetic/long/``), evaluates it every 5 epochs on the first 100 val images (plus once
untrained, at epoch 0), then once on the whole val set; the GT-box bound is evaluated on both.

    python tools/run_convergence.py --rows paper_prompter   # one row (~70 min on one core)
    OMP_NUM_THREADS=1 taskset -c 1 python tools/run_convergence.py --rows twostage   # in parallel
    python tools/run_convergence.py --collect   # -> docs/benchmark/convergence.json
                                                #    + docs/images/convergence.png

A row runs ``tools/train_net.py --resume`` (checkpoints every 10 epochs), so a stopped row
continues where it stopped, and ``--collect`` reports the curve of any row that has begun.
Not part of ``make main`` or CI.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tools"))

from run_synthetic_benchmark import (  # noqa: E402  (the main job's preparation steps)
    ensure_synthetic_parts,
    ensure_tiny_sam,
    load_cfg,
    synthetic_splits,
)

# name -> (config, description); the order is the plot legend's.
LONG_ROWS = {
    "paper_prompter": (
        "configs/synthetic/long/wps_sam_tiny_box_q25_paper_1000img_100ep.yaml",
        "WPS-SAM, the paper's prompter (6+6 layers, learned queries)",
    ),
    "twostage": (
        "configs/synthetic/long/wps_sam_tiny_box_q25_twostage_1000img_100ep.yaml",
        "WPS-SAM, two-stage recipe (the main job's)",
    ),
    "det_sam_sam_encoder": (
        "configs/synthetic/long/det_sam_sam_encoder_1000img_100ep.yaml",
        "Det-SAM, Faster R-CNN on the frozen SAM encoder",
    ),
}
GT_BOX_CONFIG = "configs/synthetic/sam_tiny_gt_box.yaml"
FULL_VAL = "synthetic_parts_val"
DEFAULT_OUTPUT = "output/convergence"
DEFAULT_JSON = "docs/benchmark/convergence.json"
DEFAULT_PNG = "docs/images/convergence.png"


def train_net(args, log_path):
    """Run tools/train_net.py with ``args``, its output appended to ``log_path``."""
    cmd = [sys.executable, "tools/train_net.py", *args]
    print(f"[convergence] {' '.join(cmd[1:])}", flush=True)
    with open(log_path, "a") as log:
        proc = subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise SystemExit(f"[convergence] failed (exit {proc.returncode}); see {log_path}")


def eval_only(config, out_dir, dataset, log_path, opts=()):
    """Results of ``--eval-only`` on ``dataset`` (written to ``out_dir/results.json``)."""
    os.makedirs(os.path.join(REPO, out_dir), exist_ok=True)
    train_net(
        ["--config-file", config, "--eval-only", "OUTPUT_DIR", out_dir]
        + ["DATASETS.TEST", f"('{dataset}',)", *opts],
        log_path,
    )
    with open(os.path.join(REPO, out_dir, "results.json")) as f:
        return json.load(f)


def prepare(configs, opts):
    """The synthetic splits, the tiny SAM and the embedding cache that ``configs`` read."""
    import wps_sam  # noqa: F401  isort:skip
    from detectron2.modeling import build_model

    from wps_sam.data.embedding_cache import build_embedding_cache

    cfgs = [load_cfg(c, opts) for c in configs]
    used = [n for cfg in cfgs for n in list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST)]
    ensure_synthetic_parts(synthetic_splits(used + [FULL_VAL]))
    ensure_tiny_sam(cfgs[0])
    base = load_cfg(GT_BOX_CONFIG, opts)
    model = build_model(base)
    build_embedding_cache(base, model, ["synthetic_parts_train", FULL_VAL], rebuild_stale=True)


def run_row(name, output_root, opts):
    """Train one long-run row (resuming if it has begun) and evaluate it on the whole val set."""
    config = LONG_ROWS[name][0]
    out_dir = os.path.join(output_root, name)
    os.makedirs(os.path.join(REPO, out_dir), exist_ok=True)
    log = os.path.join(REPO, output_root, f"{name}.log")
    cfg = load_cfg(config, opts)
    start_path = os.path.join(REPO, out_dir, "epoch0.json")
    if not os.path.isfile(start_path):  # the untrained model: the curve's first point
        res = eval_only(config, os.path.join(out_dir, "epoch0"), cfg.DATASETS.TEST[0], log, opts)
        with open(start_path, "w") as f:
            json.dump(res, f, indent=1)
    start = time.time()
    train_net(["--config-file", config, "--resume", "OUTPUT_DIR", out_dir, *opts], log)
    wall = time.time() - start
    weights = os.path.join(out_dir, "model_final.pth")
    final = eval_only(
        config, os.path.join(out_dir, "full_val"), FULL_VAL, log, [*opts, "MODEL.WEIGHTS", weights]
    )
    with open(os.path.join(REPO, out_dir, "full_val.json"), "w") as f:
        json.dump({"results": final, "wall_seconds_this_call": wall}, f, indent=1)
    print(f"[convergence] {name}: whole val set {final.get('sem_seg', {})}", flush=True)


def gt_box_bound(output_root, opts):
    """The GT-box bound (SAM prompted with the true part boxes) on the val subset and on the
    whole val set, evaluated once and kept under ``output_root/sam_gt_box``."""
    path = os.path.join(REPO, output_root, "sam_gt_box.json")
    if os.path.isfile(path):
        with open(path) as f:
            return json.load(f)
    log = os.path.join(REPO, output_root, "sam_gt_box.log")
    subset = load_cfg(LONG_ROWS["twostage"][0], opts).DATASETS.TEST[0]
    bound = {}
    for dataset in (subset, FULL_VAL):
        out = os.path.join(output_root, "sam_gt_box", dataset)
        bound[dataset] = eval_only(GT_BOX_CONFIG, out, dataset, log, opts)["sem_seg"]
    with open(path, "w") as f:
        json.dump(bound, f, indent=1)
    return bound


def read_curve(out_dir, images, batch, max_iter):
    """The periodic evaluations of a training run from its ``metrics.json`` (the last record of
    each iteration wins, so a resumed run's repeated iterations count once), as a list of
    ``{"epoch", "iter", "mIoU", "part_mIoU", "seconds"}``. ``seconds`` is the training time
    without evaluation (``train_seconds``, written every 20 iterations), interpolated to the
    evaluated iteration."""
    records = {}
    path = os.path.join(out_dir, "metrics.json")
    if os.path.isfile(path):
        with open(path) as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:  # an empty line, or one cut short by a stop
                    continue
                records.setdefault(rec["iteration"], {}).update(rec)
    timed = [(it, r["train_seconds"]) for it, r in sorted(records.items()) if "train_seconds" in r]
    curve = []
    for it in sorted(records):
        rec = records[it]
        if "sem_seg/mIoU" not in rec:
            continue
        # Evaluations after a step are recorded at its 0-based index; the one after the last
        # step at max_iter.
        iters = min(it + 1, max_iter)
        point = {
            "epoch": round(iters * batch / images, 3),
            "iter": iters,
            "mIoU": rec["sem_seg/mIoU"],
            "part_mIoU": rec["sem_seg/mIoU-parts"],
            "seconds": _interpolate(timed, iters - 1),
        }
        if "bbox/AP" in rec:
            point["box_AP"] = rec["bbox/AP"]
        curve.append(point)
    return curve


def _interpolate(points, x):
    """Linear interpolation in sorted ``[(x, y)]``, clamped at the ends; None if empty."""
    if not points:
        return None
    if x <= points[0][0]:
        return round(points[0][1] * (x + 1) / (points[0][0] + 1), 1)
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if x0 <= x <= x1:
            return round(y0 + (y1 - y0) * (x - x0) / (x1 - x0), 1)
    return round(points[-1][1], 1)


def collect_row(name, output_root, opts):
    """One row of convergence.json from what its run has written so far (None: not begun)."""
    from detectron2.data import DatasetCatalog

    config, description = LONG_ROWS[name]
    out_dir = os.path.join(REPO, output_root, name)
    if not os.path.isdir(out_dir):
        return None
    from wps_sam.solver import resolve_epoch_schedule

    cfg = resolve_epoch_schedule(load_cfg(config, opts))
    images = sum(len(DatasetCatalog.get(n)) for n in cfg.DATASETS.TRAIN)
    batch = cfg.SOLVER.IMS_PER_BATCH
    curve = []
    start_path = os.path.join(out_dir, "epoch0.json")
    if os.path.isfile(start_path):
        with open(start_path) as f:
            sem = json.load(f)["sem_seg"]
        curve.append(
            {"epoch": 0, "iter": 0, "mIoU": sem["mIoU"], "part_mIoU": sem["mIoU-parts"]}
            | {"seconds": 0.0}
        )
    curve += read_curve(out_dir, images, batch, cfg.SOLVER.MAX_ITER)
    epochs = cfg.SOLVER.NUM_EPOCHS
    row = {
        "description": description,
        "recipe": config,
        "command": f"python tools/run_convergence.py --rows {name}",
        "training_images": images,
        "train_datasets": list(cfg.DATASETS.TRAIN),
        "curve_dataset": cfg.DATASETS.TEST[0],
        "batch": batch,
        "base_lr": cfg.SOLVER.BASE_LR,
        "epochs_planned": epochs,
        "epochs_done": curve[-1]["epoch"] if curve else 0,
        "curve": curve,
    }
    final_path = os.path.join(out_dir, "full_val.json")
    if os.path.isfile(final_path):
        with open(final_path) as f:
            final = json.load(f)["results"]
        row["full_val"] = {
            "dataset": FULL_VAL,
            "mIoU": final["sem_seg"]["mIoU"],
            "part_mIoU": final["sem_seg"]["mIoU-parts"],
            **({"box_AP": final["bbox"]["AP"]} if "bbox" in final else {}),
        }
    return row


def plot(data, png_path):
    """Part mIoU against epochs for every row, the GT-box bound as a horizontal line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=120)
    for name, row in data["rows"].items():
        pts = row["curve"]
        line = ax.plot(
            [p["epoch"] for p in pts], [p["part_mIoU"] for p in pts], marker="o", ms=3, lw=1.5
        )[0]
        line.set_label(row["description"])
        if "full_val" in row:
            ax.plot(
                [pts[-1]["epoch"]],
                [row["full_val"]["part_mIoU"]],
                marker="*",
                ms=11,
                color=line.get_color(),
                ls="none",
            )
    bound = data["gt_box_bound"]
    subset = bound[data["curve_dataset"]]["part_mIoU"]
    ax.axhline(subset, color="black", ls="--", lw=1)
    ax.text(1, subset + 1, f"GT-box bound (SAM + true boxes): {subset:.1f}", fontsize=8)
    ax.axhline(0.76 * subset, color="grey", ls=":", lw=1)
    ax.text(1, 0.76 * subset + 1, "0.76x bound (the paper's ratio)", fontsize=8, color="grey")
    ax.set_xlabel("epoch (1000 training images, batch 8)")
    ax.set_ylabel(f"part mIoU on {data['curve_dataset']}")
    ax.set_ylim(0, max(100, subset + 8) if subset > 90 else subset + 8)
    ax.set_title("Convergence on the synthetic part benchmark (tiny SAM v2; stars: whole val set)")
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center right")
    fig.tight_layout()
    os.makedirs(os.path.dirname(png_path), exist_ok=True)
    fig.savefig(png_path)
    plt.close(fig)
    return png_path


def collect(output_root, json_path, png_path, device, opts):
    rows = {}
    for name in LONG_ROWS:
        row = collect_row(name, output_root, opts)
        if row is not None:
            row["device"] = device
            rows[name] = row
    if not rows:
        raise SystemExit(f"[convergence] no row has begun under {output_root}: run --rows first")
    bound = gt_box_bound(output_root, opts)
    subset = next(iter(rows.values()))["curve_dataset"]
    data = {
        "benchmark": "synthetic_parts (tiny SAM v2, configs/synthetic/Base-TinySAM.yaml)",
        "curve_dataset": subset,
        "gt_box_bound": {
            k: {"mIoU": v["mIoU"], "part_mIoU": v["mIoU-parts"]} for k, v in bound.items()
        },
        "rows": rows,
    }
    for row in rows.values():
        if row["curve"]:
            best = max(p["part_mIoU"] for p in row["curve"])
            row["best_part_mIoU_over_bound"] = round(best / bound[subset]["mIoU-parts"], 3)
        if "full_val" in row:
            row["full_val"]["part_mIoU_over_bound"] = round(
                row["full_val"]["part_mIoU"] / bound[FULL_VAL]["mIoU-parts"], 3
            )
    os.makedirs(os.path.dirname(os.path.join(REPO, json_path)), exist_ok=True)
    with open(os.path.join(REPO, json_path), "w") as f:
        json.dump(data, f, indent=1)
    print(f"[convergence] written: {json_path}, {plot(data, os.path.join(REPO, png_path))}")
    return data


def default_device():
    return f"CPU ({platform.processor() or platform.machine()}), 1 thread, pinned to one core"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="", help=f"rows to run, ',' separated: {list(LONG_ROWS)}")
    parser.add_argument("--collect", action="store_true", help="write the JSON and the picture")
    parser.add_argument("--output", default=DEFAULT_OUTPUT, help="where the rows' runs go")
    parser.add_argument("--json", default=DEFAULT_JSON)
    parser.add_argument("--png", default=DEFAULT_PNG)
    parser.add_argument("--device", default=None, help="the device the rows ran on, for the JSON")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides for every row")
    args = parser.parse_args()
    os.chdir(REPO)
    rows = [r for r in args.rows.split(",") if r]
    unknown = [r for r in rows if r not in LONG_ROWS]
    if unknown:
        raise SystemExit(f"Unknown rows {unknown}; known: {list(LONG_ROWS)}")
    if not rows and not args.collect:
        parser.error("give --rows and/or --collect")
    opts = list(args.opts)
    if rows:
        os.makedirs(args.output, exist_ok=True)
        prepare([LONG_ROWS[r][0] for r in rows], opts)
        for name in rows:
            run_row(name, args.output, opts)
    if args.collect:
        collect(args.output, args.json, args.png, args.device or default_device(), opts)


if __name__ == "__main__":
    main()
