"""The speed benchmark (wps_sam.speed_benchmark, the logic of tools/benchmark.py) on the tiny SAM:
every key is written, every measure is positive and finite, and the ratios agree with the times
the report holds. No assertion compares two timings: which of two runs is faster depends on the
machine and its load, not on the code."""

import json
import math
import os

import wps_sam  # noqa: F401  isort:skip
from wps_sam import speed_benchmark

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TIMES = ("encoder_s", "prompter_s", "decoder_s", "infer_s")
RATES = ("train_ips_cached", "train_ips_encoder", "cache_build_ips")
RATIOS = ("train_speedup", "infer_over_encoder", "cache_build_over_encoder")


def test_benchmark_tiny_sam_keys_and_ratios(tmp_path, capsys):
    output = str(tmp_path / "bench.json")
    config = os.path.join(REPO_ROOT, "configs", "synthetic", "wps_sam_tiny_box_q25_twostage.yaml")
    returned = speed_benchmark.main(
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
    assert result == json.loads(json.dumps(returned))  # the file is what main returns
    printed = capsys.readouterr().out
    assert all(key in printed for key in result) and f"written: {output}" in printed

    assert set(speed_benchmark.KEYS) <= set(result)
    assert set(TIMES + RATES + RATIOS) <= set(result)
    assert result["device"].startswith("cpu") and result["peak_gpu_mb"] is None
    assert result["config"] == config and result["prompts"] == 25  # every query kept
    settings = result["settings"]
    assert (settings["train_batch"], settings["iters"], settings["cache_images"]) == (2, 1, 2)
    for key in TIMES + RATES + RATIOS + ("peak_rss_mb",):
        assert isinstance(result[key], float), key
        assert result[key] > 0 and math.isfinite(result[key]), key

    # The ratios are those of the times the report holds (cache batch 1: the encoder's per image
    # is encoder_s).
    assert math.isclose(
        result["train_speedup"], result["train_ips_cached"] / result["train_ips_encoder"]
    )
    assert math.isclose(result["infer_over_encoder"], result["infer_s"] / result["encoder_s"])
    assert math.isclose(
        result["cache_build_over_encoder"], 1 / (result["cache_build_ips"] * result["encoder_s"])
    )
    # The tiny SAM's float16 embedding is 256 x 16 x 16 (a size, not a time).
    embedding_bytes = 256 * 16 * 16 * 2
    assert embedding_bytes < result["cache_bytes_per_image"] < 1.05 * embedding_bytes


def test_tool_is_the_package_command_line():
    """tools/benchmark.py is a thin wrapper: it runs wps_sam.speed_benchmark.main."""
    with open(os.path.join(REPO_ROOT, "tools", "benchmark.py")) as f:
        source = f.read()
    assert "from wps_sam.speed_benchmark import main" in source
    args = speed_benchmark.parse_args(["--config-file", "c.yaml", "--output", "o.json"])
    assert (args.iters, args.train_batch, args.num_parts, args.cache_images) == (3, None, 10, 4)
    assert (args.cache_batch, args.device, args.opts) == (1, None, [])
