"""The daily tools: demo/demo.py (wps_sam.engine.demo_cli), tools/plot_metrics.py and train_net's
start-up summary."""

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

import wps_sam  # noqa: F401  isort:skip
from detectron2.modeling import build_model  # noqa: E402

from wps_sam.cli_config import load_wps_sam_cfg  # noqa: E402
from wps_sam.data.datasets.register_synthetic_parts import (  # noqa: E402
    register_all_synthetic_parts,
)
from wps_sam.data.embedding_cache import build_embedding_cache  # noqa: E402
from wps_sam.data.embedding_cache_status import cache_completeness  # noqa: E402
from wps_sam.engine import demo_cli  # noqa: E402  (the logic of demo/demo.py)
from wps_sam.engine.startup_summary import count_parameters, startup_summary  # noqa: E402
from wps_sam.metrics_plot import load_metrics, plot_metrics  # noqa: E402
from wps_sam.synthetic.parts import generate_synthetic_parts  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(REPO, "configs", "tests", "tiny_random_sam.yaml")


# --- plot_metrics -------------------------------------------------------------------------------


def _write_metrics(path):
    lines = [
        {"iteration": i, "total_loss": 10.0 - i / 10, "loss_cls": 5.0, "lr": 1e-4}
        for i in (19, 39, 59)
    ]
    lines.append({"iteration": 39, "total_loss": 1.0, "loss_cls": 0.5, "lr": 2e-4})  # resumed
    lines.append({"iteration": 59, "sem_seg/mIoU": 42.5, "sem_seg/mIoU-parts": 30.25})
    with open(path, "w") as f:
        for r in lines:
            f.write(json.dumps(r) + "\n")
        f.write('{"iteration": 79, "total_lo')  # a run killed while writing


def test_load_metrics_merges_resumed_and_evaluation_records(tmp_path):
    _write_metrics(tmp_path / "metrics.json")
    records = load_metrics(str(tmp_path))
    assert list(records) == [19, 39, 59]
    assert records[39]["total_loss"] == 1.0  # the later (resumed) line wins
    assert records[59]["sem_seg/mIoU"] == 42.5 and records[59]["total_loss"] == pytest.approx(4.1)


def test_plot_metrics_writes_a_png(tmp_path):
    _write_metrics(tmp_path / "metrics.json")
    subprocess.run(
        [sys.executable, os.path.join("tools", "plot_metrics.py"), str(tmp_path)],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    image = cv2.imread(str(tmp_path / "metrics.png"))
    assert image is not None and image.shape[0] > 200 and image.shape[1] > 600
    assert image.std() > 10  # curves and text, not a blank canvas
    out = plot_metrics(str(tmp_path / "metrics.json"), str(tmp_path / "sub" / "c.png"), "t")
    assert os.path.isfile(out)
    with pytest.raises(FileNotFoundError, match="metrics.json"):
        load_metrics(str(tmp_path / "nowhere"))


# --- demo ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo_in")
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(60, 80), (50, 40)]):
        cv2.imwrite(str(root / f"img{i}.png"), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    ok, jpg = cv2.imencode(".jpg", rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    (root / "truncated.jpg").write_bytes(jpg.tobytes()[:300])
    (root / "notes.jpg").write_text("not an image")
    return root


DEMO_OPTS = [
    "--opts",
    "DATASETS.TEST",
    '("synthetic_parts_val",)',
    "MODEL.WPS_SAM.NUM_CLASSES",
    "20",
]


def test_demo_folder_with_bad_files(demo_inputs, tmp_path, capsys):
    demo = demo_cli
    out = tmp_path / "out"
    rc = demo.main(
        [
            "--config-file",
            TINY,
            "--input",
            str(demo_inputs),
            str(tmp_path / "missing*.png"),
            "--output",
            str(out),
            "--confidence-threshold",
            "0.0",
            "--save-label-png",
            "--save-part-masks",
        ]
        + DEMO_OPTS
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "4 images" in printed and "2 written" in printed and "2 skipped" in printed
    assert "truncated.jpg" in printed and "notes.jpg" in printed
    for name, (h, w) in (("img0", (60, 80)), ("img1", (50, 40))):
        assert cv2.imread(str(out / f"{name}.png")) is not None
        labels = cv2.imread(str(out / f"{name}_labels.png"), cv2.IMREAD_UNCHANGED)
        assert labels.shape == (h, w) and labels.max() <= 20  # 20 = background
        masks = sorted(os.listdir(out / f"{name}_parts"))
        assert masks, "score threshold 0 keeps every query"
        mask = cv2.imread(str(out / f"{name}_parts" / masks[0]), cv2.IMREAD_UNCHANGED)
        assert mask.shape == (h, w) and set(np.unique(mask)) <= {0, 255}
    assert not (out / "truncated.png").exists()


def test_demo_single_file_output_and_all_bad(demo_inputs, tmp_path):
    demo = demo_cli
    target = tmp_path / "one" / "result.png"
    rc = demo.main(
        ["--config-file", TINY, "--input", str(demo_inputs / "img1.png"), "--output", str(target)]
        + DEMO_OPTS
    )
    assert rc == 0 and cv2.imread(str(target)) is not None
    rc = demo.main(
        [
            "--config-file",
            TINY,
            "--input",
            str(demo_inputs / "notes.jpg"),
            "--output",
            str(tmp_path / "bad"),
        ]
        + DEMO_OPTS
    )
    assert rc == 1
    with pytest.raises(SystemExit, match="folder"):
        demo.main(
            ["--config-file", TINY, "--input", str(demo_inputs), "--output", str(target)]
            + DEMO_OPTS
        )


# --- start-up summary ---------------------------------------------------------------------------


def test_startup_summary_counts_parameters_datasets_and_cache(tmp_path):
    root = tmp_path / "synthetic_parts"
    generate_synthetic_parts(
        str(root), "train", num_images=4, image_size=64, seed=2, num_workers=0, show_progress=False
    )
    generate_synthetic_parts(
        str(root), "val", num_images=2, image_size=64, seed=2, num_workers=0, show_progress=False
    )
    register_all_synthetic_parts(str(root), name_prefix="t17_parts")
    cache = tmp_path / "cache"
    cfg = load_wps_sam_cfg(
        TINY,
        [
            "DATASETS.TRAIN",
            '("t17_parts_train",)',
            "DATASETS.TEST",
            '("t17_parts_val",)',
            "MODEL.WPS_SAM.NUM_CLASSES",
            "20",
            "INPUT.EMBEDDING_CACHE_DIR",
            str(cache),
        ],
    )
    model = build_model(cfg)
    counts = count_parameters(model)
    prompter = sum(p.numel() for p in model.prompter.parameters())
    sam = sum(p.numel() for p in model.sam.parameters())
    assert counts["total"] == {"trainable": prompter, "frozen": sam}
    assert counts["prompter"]["trainable"] == prompter and counts["sam"]["trainable"] == 0

    lines = startup_summary(cfg, model)
    text = "\n".join(lines)
    assert f"parameters: {prompter:,} trainable, {sam:,} frozen" in text
    assert "SAM: variant custom, 128 px input, no checkpoint: RANDOM weights" in text
    assert "train t17_parts_train: 4 images; test t17_parts_val: 2 images" in text
    assert f"embedding cache: {cache} does not exist" in text

    build_embedding_cache(cfg, model, ["t17_parts_train"])  # the val images stay uncached
    status = cache_completeness(cfg, ["t17_parts_train", "t17_parts_val"])
    assert status["total"] == {"images": 6, "cached": 4, "stale": 0, "missing": 2}
    assert status["t17_parts_train"]["cached"] == 4
    text = "\n".join(startup_summary(cfg, model))
    assert "4/6 images cached (66.7%; t17_parts_train 4/4; t17_parts_val 0/2)" in text
    assert "2 missing" in text

    off = load_wps_sam_cfg(
        TINY,
        [
            "DATASETS.TRAIN",
            '("t17_parts_train",)',
            "DATASETS.TEST",
            "()",
            "MODEL.WPS_SAM.NUM_CLASSES",
            "20",
        ],
    )
    assert "embedding cache: off" in "\n".join(startup_summary(off, model, train=False))
    assert cache_completeness(off, ["t17_parts_train"]) == {
        "enabled": False,
        "cache_dir": "",
        "exists": False,
    }
