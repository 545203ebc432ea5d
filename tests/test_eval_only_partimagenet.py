"""``tools/train_net.py --eval-only`` on the PartImageNet fixture with a tiny random SAM.

Runs the real command line in a fresh interpreter with ``DETECTRON2_DATASETS`` pointing at a
fixture in the release's layout, so it goes through the built-in ``partimagenet_val``
registration, the mapper, the model and both evaluators, and writes ``results.json``.
"""

import json
import os
import subprocess
import sys

import pytest

from partimagenet_fixture import make_partimagenet

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_eval_only_on_partimagenet_fixture(tmp_path):
    data_root = tmp_path / "datasets"
    make_partimagenet(str(data_root), split="val")
    out_dir = tmp_path / "output"
    config = tmp_path / "eval_only.yaml"
    base = os.path.join(REPO_ROOT, "configs", "tests", "tiny_random_sam.yaml")
    config.write_text(
        f'_BASE_: "{base}"\n'
        "MODEL:\n  WPS_SAM:\n    NUM_CLASSES: 40\n"
        'DATASETS:\n  TRAIN: ("partimagenet_train",)\n  TEST: ("partimagenet_val",)\n'
        f'OUTPUT_DIR: "{out_dir}"\n'
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["DETECTRON2_DATASETS"] = str(data_root)
    result = subprocess.run(
        [
            sys.executable,
            os.path.join("tools", "train_net.py"),
            "--config-file",
            str(config),
            "--eval-only",
            "MODEL.DEVICE",
            "cpu",
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-5000:])
    with open(out_dir / "results.json") as f:
        results = json.load(f)
    sem_seg, paper = results["sem_seg"], results["paper_protocol"]
    for key in ("mIoU", "fwIoU", "mACC", "pACC", "mIoU-parts", "mACC-parts", "IoU-background"):
        assert 0.0 <= sem_seg[key] <= 100.0, key
    # The fixture's ground truth has 4 (image, part) entries: Quadruped Head/Body/Foot, Fish Fin.
    assert paper["num_entries"] == 4 and 0.0 <= paper["mIoU"] <= 100.0
