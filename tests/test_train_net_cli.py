"""``--help`` of tools/train_net.py and the user scripts works from the repository root with the
installed package.

Run in a fresh interpreter without PYTHONPATH, so it proves ``wps_sam`` is importable as installed
(no ``sys.path`` hacks) and that every import of the script succeeds before argparse prints help.
"""

import os
import subprocess
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_train_net_help():
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, os.path.join("tools", "train_net.py"), "--help"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for option in ("--config-file", "--eval-only", "--resume", "--num-gpus"):
        assert option in result.stdout, option


def test_user_scripts_help():
    """The demo (detectron2's ``demo/demo.py`` place) and the other user tools parse their command
    line after importing everything they use."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    scripts = {
        os.path.join("demo", "demo.py"): ("--config-file", "--input", "--confidence-threshold"),
        os.path.join("tools", "visualize_predictions.py"): ("--dataset", "--num-images"),
        os.path.join("tools", "cache_embeddings.py"): ("--rebuild-stale", "--shard-size"),
    }
    for script, options in scripts.items():
        result = subprocess.run(
            [sys.executable, script, "--help"],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert result.returncode == 0, f"{script}: {result.stderr[-3000:]}"
        for option in options:
            assert option in result.stdout, (script, option)
