#!/usr/bin/env python
"""Make ``import detectron2`` work in the current environment, without compiling anything.

detectron2 is not published on PyPI. If it already imports (for example a user who built the
official source with its CUDA ops), this script leaves it alone. Otherwise it fetches the
``pb1-detectron2==0.6`` source distribution from PyPI, whose Python sources are those of the
official detectron2 v0.6 release but which ships no ``detectron2/layers/csrc`` (so ``pip install``
of it fails while compiling), and copies its pure-Python ``detectron2/`` package into
site-packages.
detectron2's runtime dependencies are declared in this project's ``setup.cfg``. The C++/CUDA ops
(``detectron2._C``: rotated boxes, deformable convolution, fast COCO eval) are then unavailable;
``wps_sam.compat`` turns their use into a clear error.

Usage: python tools/install_detectron2.py [--force]
"""

import argparse
import glob
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile

SDIST_REQUIREMENT = "pb1-detectron2==0.6"


def detectron2_importable():
    return importlib.util.find_spec("detectron2") is not None


def install_from_sdist():
    site_packages = sysconfig.get_paths()["purelib"]
    with tempfile.TemporaryDirectory(prefix="wps_sam_d2_") as tmp:
        # --no-build-isolation: preparing the sdist's metadata imports torch (installed already).
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--no-binary",
            ":all:",
            "--no-build-isolation",
            "-d",
            tmp,
            SDIST_REQUIREMENT,
        ]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            sys.exit(
                f"[install_detectron2] could not fetch {SDIST_REQUIREMENT} from the package "
                f"index:\n"
                f"{result.stderr[-2000:]}\nInstall detectron2 yourself (see "
                "docs/GETTING_STARTED.md, 'Install') and run setup again."
            )
        archives = glob.glob(os.path.join(tmp, "*.tar.gz")) + glob.glob(os.path.join(tmp, "*.zip"))
        if not archives:
            sys.exit(f"[install_detectron2] pip download left no source archive in {tmp}")
        with tarfile.open(archives[0]) as tar:
            tar.extractall(tmp, filter="data")
        packages = glob.glob(os.path.join(tmp, "*", "detectron2", "__init__.py"))
        if not packages:
            sys.exit(f"[install_detectron2] no detectron2/ package inside {archives[0]}")
        source = os.path.dirname(packages[0])
        target = os.path.join(site_packages, "detectron2")
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(
            source, target, ignore=shutil.ignore_patterns("csrc", "*.cu", "*.cpp", "*.h")
        )
        # detectron2.model_zoo looks up its yaml files inside the package; the official build links
        # the repository's configs/ there. Ship them when the sdist has them.
        configs = os.path.join(os.path.dirname(source), "configs")
        zoo_configs = os.path.join(target, "model_zoo", "configs")
        if os.path.isdir(configs) and not os.path.isdir(zoo_configs):
            shutil.copytree(configs, zoo_configs)
        print(f"[install_detectron2] installed detectron2 v0.6 Python sources into {target}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="reinstall even if it imports")
    args = parser.parse_args()
    if detectron2_importable() and not args.force:
        print("[install_detectron2] detectron2 already importable; left as is")
        return
    install_from_sdist()


if __name__ == "__main__":
    main()
