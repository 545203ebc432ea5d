"""tools/run_convergence.py (the long-run rows): reading curves from metrics.json, the picture,
the training-time hook and the dataset subsets the rows use. The long runs themselves are opt-in
and not run here."""

import json
import os
import sys

import pytest

import wps_sam  # noqa: F401  isort:skip
from detectron2.data import DatasetCatalog  # noqa: E402
from detectron2.utils.events import EventStorage  # noqa: E402

from wps_sam.cli_config import load_wps_sam_cfg  # noqa: E402
from wps_sam.data.datasets.register_synthetic_parts import (  # noqa: E402
    SYNTHETIC_SUBSETS,
    register_all_synthetic_parts,
)
from wps_sam.engine import TrainTimeHook  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tools"))

import run_convergence as rc  # noqa: E402


def _write(path, records, tail=""):
    with open(path, "w") as f:
        for rec in records:
            f.write(json.dumps(rec) + "\n")
        f.write(tail)


def test_read_curve_resume_interpolation_and_last_eval(tmp_path):
    records = [
        {"iteration": 19, "train_seconds": 10.0, "total_loss": 3.0},
        {"iteration": 39, "train_seconds": 20.0, "total_loss": 2.0},
        {"iteration": 49, "sem_seg/mIoU": 10.0, "sem_seg/mIoU-parts": 5.0},
        # a resumed run repeats iterations 39..59: the later records win
        {"iteration": 39, "train_seconds": 21.0, "total_loss": 2.1},
        {"iteration": 49, "sem_seg/mIoU": 12.0, "sem_seg/mIoU-parts": 6.0},
        {"iteration": 59, "train_seconds": 31.0, "total_loss": 1.0},
        # the evaluation after the last step (max_iter 60) is recorded at its index
        {"iteration": 59, "sem_seg/mIoU": 20.0, "sem_seg/mIoU-parts": 15.0, "bbox/AP": 3.5},
    ]
    _write(tmp_path / "metrics.json", records, tail='{"iteration": 60, "sem_')  # cut short
    curve = rc.read_curve(str(tmp_path), images=40, batch=4, max_iter=60)
    assert [p["iter"] for p in curve] == [50, 60]
    assert [p["epoch"] for p in curve] == [5.0, 6.0]
    assert curve[0]["mIoU"] == 12.0 and curve[0]["part_mIoU"] == 6.0
    assert curve[0]["seconds"] == pytest.approx(26.0)  # between (39, 21) and (59, 31)
    assert curve[1]["seconds"] == pytest.approx(31.0)
    assert curve[1]["box_AP"] == 3.5 and "box_AP" not in curve[0]


def test_read_curve_of_a_row_not_begun(tmp_path):
    assert rc.read_curve(str(tmp_path), images=10, batch=2, max_iter=5) == []


def test_interpolate_clamps_at_the_ends():
    pts = [(19, 10.0), (39, 30.0)]
    assert rc._interpolate([], 5) is None
    assert rc._interpolate(pts, 9) == pytest.approx(5.0)  # proportional before the first record
    assert rc._interpolate(pts, 29) == pytest.approx(20.0)
    assert rc._interpolate(pts, 100) == pytest.approx(30.0)


def test_plot_writes_a_picture(tmp_path):
    curve = [
        {"epoch": 0, "iter": 0, "mIoU": 2.0, "part_mIoU": 1.0, "seconds": 0.0},
        {"epoch": 5, "iter": 10, "mIoU": 30.0, "part_mIoU": 25.0, "seconds": 4.0},
    ]
    data = {
        "curve_dataset": "synthetic_parts_val_100",
        "gt_box_bound": {"synthetic_parts_val_100": {"mIoU": 77.0, "part_mIoU": 76.0}},
        "rows": {
            "twostage": {
                "description": "two-stage",
                "curve": curve,
                "full_val": {"part_mIoU": 24.0},
            }
        },
    }
    png = rc.plot(data, str(tmp_path / "c.png"))
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


class _FakeTrainer:
    def __init__(self, storage):
        self.storage = storage


def test_train_time_hook_counts_steps_and_resumes():
    hook = TrainTimeHook()
    with EventStorage(0) as storage:
        hook.trainer = _FakeTrainer(storage)
        for _ in range(3):
            hook.before_step()
            hook.after_step()
            storage.step()
        seconds = storage.history("train_seconds").latest()
    assert seconds >= 0.0
    assert hook.state_dict() == {"seconds": seconds}
    resumed = TrainTimeHook()
    resumed.load_state_dict(hook.state_dict())
    assert resumed.state_dict() == {"seconds": seconds}


def test_subsets_the_long_rows_use_are_registered():
    register_all_synthetic_parts()
    names = DatasetCatalog.list()
    for split, sizes in SYNTHETIC_SUBSETS.items():
        for size in sizes:
            assert f"synthetic_parts_{split}_{size}" in names
    assert "synthetic_parts_train_1000" in names and "synthetic_parts_val_100" in names


@pytest.mark.parametrize("row", sorted(rc.LONG_ROWS))
def test_long_row_configs_train_100_epochs_over_1000_images(row):
    cfg = load_wps_sam_cfg(os.path.join(REPO, rc.LONG_ROWS[row][0]))
    assert cfg.SOLVER.NUM_EPOCHS >= 100
    assert tuple(cfg.DATASETS.TRAIN) == ("synthetic_parts_train_1000",)
    assert tuple(cfg.DATASETS.TEST) == ("synthetic_parts_val_100",)
    assert cfg.OUTPUT_DIR == f"output/convergence/{row}"
