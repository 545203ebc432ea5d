#!/usr/bin/env python
"""The offline main job: WPS-SAM trained and evaluated end to end on the synthetic part benchmark.

Prepares what is missing (the synthetic part dataset's splits that the rows use, with
``datasets/prepare_synthetic_parts.py``; the project's tiny SAM; the cache of its image
embeddings), then runs ``tools/train_net.py`` for each benchmark row, evaluates on
``synthetic_parts_val``, saves overlays of a few validation images and prints the results table.

    python tools/run_synthetic_benchmark.py                 # main rows (10-13 min on 2 CPU cores)
    python tools/run_synthetic_benchmark.py --rows table    # + GT points, points, 50 queries,
                                                            #   the paper's prompter (100 epochs)
    python tools/run_synthetic_benchmark.py --rows baselines  # Det-SAM x 2, SAM pseudo-labels
    python tools/run_synthetic_benchmark.py --rows all      # + earlier recipes
    python tools/run_synthetic_benchmark.py --rows wps_sam_box --quick   # smoke run (tests)

Every row is a plain train_net.py command, printed before it runs, so any row can be rerun alone.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import wps_sam  # noqa: F401  isort:skip
from detectron2.data import DatasetCatalog  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402
from tabulate import tabulate  # noqa: E402

from wps_sam.cli_config import load_wps_sam_cfg  # noqa: E402
from wps_sam.data.datasets.register_synthetic_parts import (  # noqa: E402
    SYNTHETIC_PARTS_SPLITS,
    SyntheticPartsMissingError,
    SyntheticPartsStaleError,
    check_synthetic_split,
    synthetic_parts_root,
)
from wps_sam.data.embedding_cache import build_embedding_cache  # noqa: E402
from wps_sam.engine.prediction_overlays import visualize  # noqa: E402
from wps_sam.metrics_plot import plot_metrics  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# name -> (config, eval only?, description); the order is the table's.
ROWS = {
    "untrained_prompter": (
        "configs/synthetic/wps_sam_tiny_box_q25.yaml",
        True,
        "untrained prompter (sanity floor)",
    ),
    "untrained_anchored": (
        "configs/synthetic/wps_sam_tiny_box_q25_anchored_dense.yaml",
        True,
        "untrained anchored prompter (floor of the main job's recipe)",
    ),
    "untrained_twostage": (
        "configs/synthetic/wps_sam_tiny_box_q25_twostage.yaml",
        True,
        "untrained two-stage prompter (floor of the main job's recipe)",
    ),
    "sam_gt_box": ("configs/synthetic/sam_tiny_gt_box.yaml", True, "SAM (tiny) + GT boxes"),
    "sam_gt_point": ("configs/synthetic/sam_tiny_gt_point.yaml", True, "SAM (tiny) + GT points"),
    "wps_sam_box": ("configs/synthetic/wps_sam_tiny_box_q25.yaml", False, "WPS-SAM, box sup."),
    "wps_sam_point": (
        "configs/synthetic/wps_sam_tiny_point_q25.yaml",
        False,
        "WPS-SAM, point sup.",
    ),
    "wps_sam_box_q50": (
        "configs/synthetic/wps_sam_tiny_box_q50.yaml",
        False,
        "WPS-SAM, box sup., 50 queries",
    ),
    "wps_sam_box_anchored": (
        "configs/synthetic/wps_sam_tiny_box_q25_anchored_10ep.yaml",
        False,
        "WPS-SAM, box sup., anchored head, 10 ep.",
    ),
    "wps_sam_box_anchored_dense": (
        "configs/synthetic/wps_sam_tiny_box_q25_anchored_dense.yaml",
        False,
        "WPS-SAM, box sup., anchored head + dense loss, 4 ep.",
    ),
    "wps_sam_point_anchored_dense": (
        "configs/synthetic/wps_sam_tiny_point_q25_anchored_dense.yaml",
        False,
        "WPS-SAM, point sup., anchored head + dense loss, 4 ep.",
    ),
    "wps_sam_box_q50_anchored_dense": (
        "configs/synthetic/wps_sam_tiny_box_q50_anchored_dense.yaml",
        False,
        "WPS-SAM, box sup., 50 queries, anchored head + dense loss, 4 ep.",
    ),
    "wps_sam_box_twostage": (
        "configs/synthetic/wps_sam_tiny_box_q25_twostage.yaml",
        False,
        "WPS-SAM, box sup., two-stage queries, 5 ep.",
    ),
    "wps_sam_point_twostage": (
        "configs/synthetic/wps_sam_tiny_point_q25_twostage.yaml",
        False,
        "WPS-SAM, point sup., two-stage queries, 5 ep.",
    ),
    "wps_sam_box_q50_twostage": (
        "configs/synthetic/wps_sam_tiny_box_q50_twostage.yaml",
        False,
        "WPS-SAM, box sup., 50 queries, two-stage queries, 5 ep.",
    ),
    "wps_sam_paper_100ep": (
        "configs/synthetic/wps_sam_tiny_box_q25_paper_100ep.yaml",
        False,
        "WPS-SAM, box sup., the paper's prompter, 320 images, 100 ep.",
    ),
    "wps_sam_box_anchored_dense_8ep": (
        "configs/synthetic/wps_sam_tiny_box_q25_anchored_dense_8ep.yaml",
        False,
        "WPS-SAM, box sup., anchored head + dense loss, 8 ep.",
    ),
    # The paper's baselines (docs/BASELINES.md), each trained for the main-job row's CPU time.
    "det_sam_scratch": (
        "configs/synthetic/det_sam_r18_fpn_scratch.yaml",
        False,
        "Det-SAM, Faster R-CNN R18-FPN from scratch",
    ),
    "det_sam_sam_encoder": (
        "configs/synthetic/det_sam_sam_encoder.yaml",
        False,
        "Det-SAM, Faster R-CNN on the frozen tiny-SAM encoder",
    ),
    "pseudo_label_semseg": (
        "configs/synthetic/pseudo_label_semseg_r18_fpn.yaml",
        False,
        "SemanticSegmentor R18-FPN on SAM pseudo-labels",
    ),
}
# Rows that need a step before train_net.py: the SAM pseudo-labels of the training set (resumable:
# a no-op once written). Its stats (pseudo-labels' own mIoU) join the row's results.
PRE_STEPS = {
    "pseudo_label_semseg": [
        "tools/generate_pseudo_labels.py",
        "--config-file",
        "configs/synthetic/sam_tiny_gt_box.yaml",
        "--dataset",
        "synthetic_parts_train",
    ],
}
BASELINE_ROWS = ["det_sam_scratch", "det_sam_sam_encoder", "pseudo_label_semseg"]
# The paper's prompter segments next to nothing at CPU budgets (docs/BENCHMARK.md); the main job
# trains the recipe that learns most within its 15-minute budget.
MAIN_ROWS = ["untrained_twostage", "sam_gt_box", "wps_sam_box_twostage"]
# The WPS-SAM rows of the results table (docs/BENCHMARK.md); the others are earlier recipes.
TABLE_ROWS = MAIN_ROWS + [
    "sam_gt_point",
    "wps_sam_point_twostage",
    "wps_sam_box_q50_twostage",
    "wps_sam_paper_100ep",
]
# A few iterations and images: proves the chain runs, not the numbers (used by tests).
QUICK_OPTS = ["SOLVER.NUM_EPOCHS", "0", "SOLVER.MAX_ITER", "20", "TEST.EVAL_PERIOD", "0"]


def load_cfg(config_file, opts=()):
    return load_wps_sam_cfg(os.path.join(REPO, config_file), opts, freeze=False)


# The committed checkpoints' recipe (docs/MODEL_ZOO.md): tiny SAM v1, 1500 steps from scratch on
# generic shapes then a second 1500-step cycle on a new stretch of them; tiny SAM v2 continues v1
# for 3000 steps on the v2 stream (part objects at every granularity + generic shapes). A stage
# whose output exists is skipped; "{ckpt}" is the config's MODEL.SAM.CHECKPOINT.
TINY_SAM_V1 = "checkpoints/tiny_sam_256.pth"
TINY_SAM_RECIPE = [
    (TINY_SAM_V1, f"--data generic --max-steps 1500 --seed 0 --output {TINY_SAM_V1}".split()),
    (
        None,  # the second cycle rewrites v1: runs whenever the first one did
        f"--data generic --init-checkpoint {TINY_SAM_V1} --seed 1 --easy-fraction 0 "
        f"--max-steps 1500 --output {TINY_SAM_V1}".split(),
    ),
    (
        "{ckpt}",
        f"--data v2 --init-checkpoint {TINY_SAM_V1} --seed 2 --easy-fraction 0 --max-steps 3000 "
        "--max-boxes 12 --max-points 4 --eval-period 250 --checkpoint-period 250 "
        "--output {ckpt}".split(),
    ),
]


def synthetic_splits(dataset_names):
    """The synthetic splits (train/val/test) that ``dataset_names`` read, in first-use order."""
    splits = []
    for name in dataset_names:
        for split in SYNTHETIC_PARTS_SPLITS:
            prefix = f"synthetic_parts_{split}"
            if (name == prefix or name.startswith(prefix + "_")) and split not in splits:
                splits.append(split)
    return splits


def ensure_synthetic_parts(splits):
    """Generate the splits that are missing or stale (datasets/prepare_synthetic_parts.py with
    its defaults; registering the datasets generates nothing)."""
    root = synthetic_parts_root()
    todo = []
    for split in splits:
        try:
            check_synthetic_split(root, split)
        except (SyntheticPartsMissingError, SyntheticPartsStaleError) as e:
            print(f"    {str(e).splitlines()[0]}")
            todo.append(split)
    if todo:
        cmd = [sys.executable, "datasets/prepare_synthetic_parts.py", "--root", root]
        cmd += ["--splits", *todo]
        print(f"[benchmark] generating: {' '.join(cmd[1:])}", flush=True)
        subprocess.run(cmd, cwd=REPO, check=True)


def ensure_tiny_sam(cfg):
    ckpt = os.path.join(REPO, cfg.MODEL.SAM.CHECKPOINT)
    if os.path.isfile(ckpt):
        return
    print(f"[benchmark] {ckpt} is missing: training the tiny SAM (tools/train_tiny_sam.py, ~2 h)")
    skipped = False
    for output, stage_args in TINY_SAM_RECIPE:
        output = ckpt if output == "{ckpt}" else output
        if output is None and skipped:
            continue
        skipped = (
            output is not None and output != ckpt and os.path.isfile(os.path.join(REPO, output))
        )
        if skipped:
            print(f"[benchmark] {output} exists: stage skipped")
            continue
        cmd = [sys.executable, os.path.join(REPO, "tools/train_tiny_sam.py"), *stage_args]
        subprocess.run([a.replace("{ckpt}", ckpt) for a in cmd], cwd=REPO, check=True)


def run_pre_step(name):
    """The row's step before training (PRE_STEPS); returns what it printed as JSON, if any."""
    cmd = [sys.executable, *PRE_STEPS[name]]
    print(f"\n[benchmark] row {name}, first: {' '.join(cmd)}", flush=True)
    out = subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.PIPE, text=True).stdout
    # The step ends by printing one indented JSON object (its first line is "{" alone); the
    # log lines before it may hold braces too.
    start = out.rfind("\n{\n")
    return json.loads(out[start + 1 : out.rfind("}") + 1]) if start >= 0 else None


def run_row(name, output_root, extra_opts, log):
    config, eval_only, _ = ROWS[name]
    out_dir = os.path.join(output_root, name)
    pre = run_pre_step(name) if name in PRE_STEPS else None
    cmd = [sys.executable, "tools/train_net.py", "--config-file", config]
    if eval_only:
        cmd.append("--eval-only")
    cmd += ["OUTPUT_DIR", out_dir, *extra_opts]
    print(f"\n[benchmark] row {name}: {' '.join(cmd)}", flush=True)
    start = time.time()
    with open(os.path.join(output_root, f"{name}.log"), "w") as f:
        proc = subprocess.Popen(
            cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for line in proc.stdout:
            f.write(line)
            if log == "all" or any(
                key in line
                for key in ("eta:", "Inference done", "copypaste", "Traceback", "Error:")
            ):
                print("    " + line.rstrip()[-160:], flush=True)
        if proc.wait() != 0:
            raise SystemExit(f"[benchmark] row {name} failed; see {f.name}")
    with open(os.path.join(REPO, out_dir, "results.json")) as f:
        results = json.load(f)
    results["seconds"] = time.time() - start
    if pre is not None:
        results["pseudo_labels"] = pre
    results["command"] = " ".join(cmd[1:])
    return out_dir, results


def table(rows_results):
    header = ["row", "mIoU", "mACC", "part mIoU", "paper-protocol mIoU", "box AP", "time (s)"]
    body = []
    for name, res in rows_results.items():
        sem = res.get("sem_seg", {})
        paper = res.get("paper_protocol", {})
        body.append(
            [
                ROWS[name][2],
                sem.get("mIoU"),
                sem.get("mACC"),
                sem.get("mIoU-parts"),
                paper.get("mIoU"),
                res.get("bbox", {}).get("AP"),  # Det-SAM rows: the part detector's box AP
                round(res["seconds"]),
            ]
        )
        quality = (res.get("pseudo_labels") or {}).get("quality")
        if quality:  # the pseudo-label row: the training labels' own quality, as a note row
            body.append(
                [
                    "  (its SAM pseudo-labels vs the real train masks)",
                    quality["mIoU"],
                    None,
                    quality["mIoU-parts"],
                    None,
                    None,
                    None,
                ]
            )
    return tabulate(body, headers=header, floatfmt=".2f", tablefmt="github")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows",
        default="main",
        help="groups ('main', 'table', 'baselines', 'all') and row names, separated by ','",
    )
    parser.add_argument("--output", default="output/synthetic_benchmark")
    parser.add_argument("--quick", action="store_true", help="20 iterations a row (smoke test)")
    parser.add_argument("--num-overlays", type=int, default=4)
    parser.add_argument("--log", choices=["progress", "all"], default="progress")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides for every row")
    args = parser.parse_args()
    os.chdir(REPO)  # configs and outputs are relative to the repository root
    groups = {
        "main": MAIN_ROWS,
        "table": TABLE_ROWS,
        "baselines": BASELINE_ROWS,
        "all": list(ROWS),
    }
    rows = []  # groups and row names, in the order given, each row once
    for item in args.rows.split(","):
        rows += [r for r in groups.get(item, [item]) if r not in rows]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        raise SystemExit(f"Unknown rows {unknown}; known: {list(ROWS)}")
    extra = (QUICK_OPTS if args.quick else []) + list(args.opts)
    start = time.time()
    output_root = args.output
    os.makedirs(os.path.join(REPO, output_root), exist_ok=True)

    base = load_cfg(ROWS["wps_sam_box"][0], extra)
    print("[benchmark] 1/4 synthetic part dataset (datasets/prepare_synthetic_parts.py)")
    used = list(base.DATASETS.TRAIN) + list(base.DATASETS.TEST)
    for name in rows:
        row_cfg = load_cfg(ROWS[name][0], extra)
        used += list(row_cfg.DATASETS.TRAIN) + list(row_cfg.DATASETS.TEST)
        step = PRE_STEPS.get(name, [])
        used += [step[i + 1] for i, a in enumerate(step) if a == "--dataset"]
    ensure_synthetic_parts(synthetic_splits(used))
    for name in list(base.DATASETS.TRAIN) + list(base.DATASETS.TEST):
        print(f"    {name}: {len(DatasetCatalog.get(name))} images")
    print("[benchmark] 2/4 tiny SAM checkpoint")
    ensure_tiny_sam(base)
    print(f"    {base.MODEL.SAM.CHECKPOINT}")
    print("[benchmark] 3/4 SAM image embeddings (computed once, reused by every row)")
    model = build_model(base)
    # The cache is derived data: one made by an older tiny SAM is rebuilt (with a warning).
    build_embedding_cache(
        base, model, list(base.DATASETS.TRAIN) + list(base.DATASETS.TEST), rebuild_stale=True
    )
    del model

    print(f"[benchmark] 4/4 rows: {rows}")
    results = {}
    for name in rows:
        out_dir, results[name] = run_row(name, output_root, extra, args.log)
        if not ROWS[name][1]:  # a trained row: its loss and mIoU curves (tools/plot_metrics.py)
            results[name]["metrics_plot"] = plot_metrics(os.path.join(REPO, out_dir))
            print(f"    curves: {results[name]['metrics_plot']}")
        if args.num_overlays > 0:
            trained = (
                [] if ROWS[name][1] else ["MODEL.WEIGHTS", os.path.join(out_dir, "model_final.pth")]
            )
            cfg = load_cfg(ROWS[name][0], extra + trained)
            paths = visualize(
                cfg, cfg.DATASETS.TEST[0], os.path.join(out_dir, "overlays"), args.num_overlays
            )
            results[name]["overlays"] = paths
            print(f"    overlays: {os.path.dirname(paths[0])}")

    text = table(results)
    with open(os.path.join(REPO, output_root, "results.json"), "w") as f:
        json.dump(results, f, indent=1, default=float)
    with open(os.path.join(REPO, output_root, "results.md"), "w") as f:
        f.write(text + "\n")
    print(f"\n[benchmark] synthetic_parts_val results ({time.time() - start:.0f} s in all):\n")
    print(text)
    print(f"\n[benchmark] written: {output_root}/results.md, results.json, <row>/overlays/*.png")


if __name__ == "__main__":
    main()
