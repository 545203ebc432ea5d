#!/usr/bin/env bash
# One-GPU check of the performance figures (docs/PERFORMANCE.md), under 10 minutes on one
# H100/H200-class GPU. Writes every figure into one folder:
#
#   bash tools/gpu_check.sh [OUT]          # default OUT: output/gpu_check
#
#   OUT/benchmark_vit_b_fp32.json   tools/benchmark.py, ViT-B (random weights), float32 encoder
#   OUT/benchmark_vit_b_bf16.json   the same with MODEL.SAM.ENCODER_AUTOCAST bf16
#   OUT/synthetic_fp32/             the synthetic main job's rows (tiny SAM): TRAIN_ITERS
#                                   iterations of WPS-SAM, then the synthetic evaluation
#   OUT/synthetic_bf16/             the same with the encoder (and its cache) under bf16
#   OUT/summary.md                  the figures beside their targets; OUT/env.txt the machine
#
# Environment overrides (the dry run on a CPU uses them: see docs/PERFORMANCE.md):
#   DEVICE (cuda), BENCH_CONFIG (configs/wps_sam.yaml), BENCH_ITERS (10), CACHE_IMAGES (64),
#   CACHE_BATCH (8), TRAIN_ITERS (300), ROWS (sam_gt_box,wps_sam_box_twostage), PY (.venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=$(realpath -m "${1:-output/gpu_check}")
DEVICE=${DEVICE:-cuda}
BENCH_CONFIG=${BENCH_CONFIG:-configs/wps_sam.yaml}
BENCH_ITERS=${BENCH_ITERS:-10}
CACHE_IMAGES=${CACHE_IMAGES:-64}
CACHE_BATCH=${CACHE_BATCH:-8}
TRAIN_ITERS=${TRAIN_ITERS:-300}
ROWS=${ROWS:-sam_gt_box,wps_sam_box_twostage}
mkdir -p "$OUT"
start=$(date +%s)
step() { echo "[gpu_check $(( $(date +%s) - start )) s] $*"; }

{
  date
  hostname
  (nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi")
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())"
  git rev-parse HEAD 2>/dev/null || true
} > "$OUT/env.txt"

for precision in fp32 bf16; do
  autocast=none
  [ "$precision" = bf16 ] && autocast=bf16
  step "benchmark $BENCH_CONFIG ($precision)"
  $PY tools/benchmark.py --config-file "$BENCH_CONFIG" --device "$DEVICE" --iters "$BENCH_ITERS" \
    --cache-images "$CACHE_IMAGES" --cache-batch "$CACHE_BATCH" \
    --output "$OUT/benchmark_vit_b_$precision.json" MODEL.SAM.ENCODER_AUTOCAST "$autocast"
done

step "synthetic part dataset (generated once, all cores; skipped when present)"
$PY datasets/prepare_synthetic_parts.py --workers "$(nproc)" \
  --root "${DETECTRON2_DATASETS:-datasets}/synthetic_parts"

for precision in fp32 bf16; do
  autocast=none
  [ "$precision" = bf16 ] && autocast=bf16
  step "synthetic main job rows $ROWS, $TRAIN_ITERS iterations ($precision encoder)"
  # A cache per precision: the cache key leaves the autocast out, so bf16 needs its own folder
  # for its embeddings to be the bf16 encoder's.
  $PY tools/run_synthetic_benchmark.py --rows "$ROWS" --output "$OUT/synthetic_$precision" \
    --num-overlays 2 MODEL.DEVICE "$DEVICE" MODEL.SAM.ENCODER_AUTOCAST "$autocast" \
    INPUT.EMBEDDING_CACHE_DIR "$OUT/cache_$precision" SOLVER.NUM_EPOCHS 0 \
    SOLVER.MAX_ITER "$TRAIN_ITERS" TEST.EVAL_PERIOD 0
done
rm -rf "$OUT/cache_fp32" "$OUT/cache_bf16"

step "summary"
$PY - "$OUT" <<'EOF'
import json
import os
import sys

out = sys.argv[1]
targets = {
    "train_speedup": (">=", 50),
    "infer_over_encoder": ("<=", 1.15),
    "cache_bytes_per_image": ("<=", 2.1e6),
    "cache_build_over_encoder": ("<=", 1.1),
}
lines = ["| figure | fp32 | bf16 | target |", "|---|---|---|---|"]
bench = {}
for p in ("fp32", "bf16"):
    with open(os.path.join(out, f"benchmark_vit_b_{p}.json")) as f:
        bench[p] = json.load(f)
keys = [k for k in bench["fp32"] if k not in ("settings", "config")]
for k in keys:
    cells = []
    for p in ("fp32", "bf16"):
        v = bench[p][k]
        cells.append(f"{v:.4g}" if isinstance(v, float) else str(v))
    op, t = targets.get(k, ("", ""))
    lines.append(f"| {k} | {cells[0]} | {cells[1]} | {op} {t} |")
for p in ("fp32", "bf16"):
    ips = 1.0 / bench[p]["infer_s"]
    lines.append(f"| inference images/s ({p}) | {ips:.1f} | | >= 100 (bf16, H200) |")
lines.append("")
lines.append("| synthetic row | fp32 encoder | bf16 encoder |")
lines.append("|---|---|---|")
res = {}
for p in ("fp32", "bf16"):
    with open(os.path.join(out, f"synthetic_{p}", "results.json")) as f:
        res[p] = json.load(f)


def miou(r):
    for key in ("mIoU-parts", "part_mIoU", "mIoU"):
        for scope in (r, r.get("sem_seg", {})):
            if isinstance(scope, dict) and key in scope:
                return f"{scope[key]:.2f}"
    return json.dumps(r)[:60]


for row in res["fp32"]:
    lines.append(f"| {row} | {miou(res['fp32'][row])} | {miou(res['bf16'].get(row, {}))} |")
text = "\n".join(lines)
with open(os.path.join(out, "summary.md"), "w") as f:
    f.write(text + "\n")
print(text)
EOF
step "done: $OUT"
