"""``python tools/train_net.py --help`` works from the repository root with the installed package.

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
