"""tools/benchmark.py on the tiny SAM: every key is written and the ratios agree with the times."""

import json
import math
import os
import sys

import wps_sam  # noqa: F401  isort:skip

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO_ROOT, "tools"))

import benchmark  # noqa: E402


def test_benchmark_tiny_sam_keys_and_ratios(tmp_path):
    output = str(tmp_path / "bench.json")
    config = os.path.join(REPO_ROOT, "configs", "synthetic", "wps_sam_tiny_box_q25_twostage.yaml")
    benchmark.main(
        [
            "--config-file",
            config,
            "--output",
            output,
            "--device",
            "cpu",
            "--iters",
            "1",
            "--train-batch",
            "2",
            "--cache-images",
            "2",
        ]
    )
    with open(output) as f:
        result = json.load(f)
    assert set(benchmark.KEYS) <= set(result)
    assert result["device"].startswith("cpu") and result["peak_gpu_mb"] is None
    assert result["config"] == config and result["prompts"] == 25  # every query kept
    for key in ("train_ips_cached", "train_ips_encoder", "infer_s", "encoder_s", "peak_rss_mb"):
        assert result[key] > 0 and math.isfinite(result[key]), key
    assert math.isclose(
        result["train_speedup"], result["train_ips_cached"] / result["train_ips_encoder"]
    )
    assert math.isclose(result["infer_over_encoder"], result["infer_s"] / result["encoder_s"])
    # Inference runs the encoder and more; the tiny SAM's float16 embedding is 256 x 16 x 16.
    assert result["infer_s"] > result["encoder_s"]
    embedding_bytes = 256 * 16 * 16 * 2
    assert embedding_bytes < result["cache_bytes_per_image"] < 1.05 * embedding_bytes
    assert result["cache_build_ips"] > 0 and result["cache_build_over_encoder"] > 0
