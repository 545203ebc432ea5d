"""``wps_sam.compat`` applies a shim only where the installed stack lacks what detectron2 v0.6 uses.

Proves, on fake modules: each patch leaves modules that already have the attribute untouched and
returns ``[]``; on modules lacking it the shim is applied and named. On the real environment: a
fresh interpreter applies exactly the shims whose attribute was missing, and ``apply_all`` is
idempotent.
"""

import importlib.util
import json
import subprocess
import sys
import types
import warnings

import numpy as np
import pytest
from PIL import Image

import wps_sam  # noqa: F401  isort:skip
from wps_sam import compat

NUMPY_NAMES = ["numpy.int", "numpy.float", "numpy.bool", "numpy.str"]
PLACEHOLDER = "detectron2._C (placeholder)"


def _placeholder_active():
    return isinstance(sys.modules.get("detectron2._C"), compat._MissingOpsModule)


# ----------------------------------------------------------------------------------------------
# NumPy aliases
# ----------------------------------------------------------------------------------------------
def test_numpy_aliases_left_alone_when_present():
    own = {name: object() for name in ("int", "float", "bool", "str")}
    fake_np = types.SimpleNamespace(**own)
    assert compat.patch_numpy_aliases(fake_np) == []
    assert vars(fake_np) == own  # same objects, nothing added


def test_numpy_aliases_restored_when_missing():
    fake_np = types.SimpleNamespace()
    assert compat.patch_numpy_aliases(fake_np) == NUMPY_NAMES
    assert (fake_np.int, fake_np.float, fake_np.bool, fake_np.str) == (int, float, bool, str)


def test_numpy_aliases_restores_only_the_missing_ones():
    own_bool = object()
    fake_np = types.SimpleNamespace(bool=own_bool)  # NumPy 2 brought np.bool back as np.bool_
    assert compat.patch_numpy_aliases(fake_np) == ["numpy.int", "numpy.float", "numpy.str"]
    assert fake_np.bool is own_bool and fake_np.int is int


class _RemovedAliasesModule(types.ModuleType):
    """Behaves like NumPy >= 1.24: the removed aliases warn and raise from ``__getattr__``."""

    def __getattr__(self, name):
        if name in ("int", "float", "bool", "str"):
            warnings.warn(f"np.{name} was a deprecated alias", FutureWarning)
            raise AttributeError(f"module 'numpy' has no attribute '{name}'")
        raise AttributeError(name)


def test_numpy_aliases_through_module_getattr_without_warnings():
    fake_np = _RemovedAliasesModule("fake_numpy")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a FutureWarning escaping would fail the test
        assert compat.patch_numpy_aliases(fake_np) == NUMPY_NAMES
    assert fake_np.float is float


# ----------------------------------------------------------------------------------------------
# Pillow
# ----------------------------------------------------------------------------------------------
def test_pil_linear_left_alone_when_present():
    own = object()
    fake_image = types.SimpleNamespace(LINEAR=own, BILINEAR=2)
    assert compat.patch_pil_linear(fake_image) == []
    assert fake_image.LINEAR is own and fake_image.BILINEAR == 2


def test_pil_linear_restored_when_missing():
    fake_image = types.SimpleNamespace(BILINEAR=2)
    assert compat.patch_pil_linear(fake_image) == ["PIL.Image.LINEAR"]
    assert fake_image.LINEAR == 2


# ----------------------------------------------------------------------------------------------
# detectron2._C
# ----------------------------------------------------------------------------------------------
def test_missing_ops_left_alone_when_present():
    compiled = types.ModuleType("detectron2._C")
    fake_modules = {"detectron2._C": compiled}
    assert compat.patch_missing_ops(fake_modules) == []
    assert fake_modules == {"detectron2._C": compiled}


def test_missing_ops_placeholder_registered_when_missing():
    """On a fake ``sys.modules`` without ``detectron2._C``; the real one must stay as it is."""
    import detectron2

    real_entry, real_attr = sys.modules.get("detectron2._C"), getattr(detectron2, "_C", None)
    fake_modules = {}
    applied = compat.patch_missing_ops(fake_modules)
    assert sys.modules.get("detectron2._C") is real_entry
    assert getattr(detectron2, "_C", None) is real_attr
    if not _placeholder_active():
        # detectron2 has its compiled ops here: nothing to stand in for.
        assert applied == [] and fake_modules == {}
        return
    assert applied == [PLACEHOLDER]
    placeholder = fake_modules["detectron2._C"]
    with pytest.raises(compat.MissingDetectron2OpsError, match="nms_rotated"):
        placeholder.nms_rotated
    with pytest.raises(AttributeError):
        placeholder.__wrapped__


# ----------------------------------------------------------------------------------------------
# The real environment
# ----------------------------------------------------------------------------------------------
def test_real_modules_need_nothing_more():
    """After ``import wps_sam`` every shim is in place, so a second pass changes nothing."""
    before = (np.int, np.float, np.bool, np.str, Image.LINEAR, sys.modules.get("detectron2._C"))
    assert compat.patch_numpy_aliases(np) == []
    assert compat.patch_pil_linear(Image) == []
    assert compat.patch_missing_ops() == []
    after = (np.int, np.float, np.bool, np.str, Image.LINEAR, sys.modules.get("detectron2._C"))
    assert all(a is b for a, b in zip(before, after))
    if int(np.__version__.split(".")[0]) >= 2:
        assert np.bool is np.bool_  # NumPy 2's own np.bool was not replaced by the builtin


def test_apply_all_is_idempotent():
    state = (np.int, np.float, np.str, Image.LINEAR, sys.modules.get("detectron2._C"))
    applied = list(compat.APPLIED)
    assert compat.apply_all() == applied
    assert compat.apply_all() == applied
    assert compat.APPLIED == applied
    assert len(set(applied)) == len(applied)
    after = (np.int, np.float, np.str, Image.LINEAR, sys.modules.get("detectron2._C"))
    assert all(a is b for a, b in zip(state, after))


_FRESH_PROCESS = r"""
import importlib.util, json, sys, warnings
import numpy as np
from PIL import Image

def missing(module, name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return not hasattr(module, name)

needed = [f"numpy.{n}" for n in ("int", "float", "bool", "str") if missing(np, n)]
if missing(Image, "LINEAR"):
    needed.append("PIL.Image.LINEAR")
if importlib.util.find_spec("detectron2") and importlib.util.find_spec("detectron2._C") is None:
    needed.append("detectron2._C (placeholder)")
# compat.py is self-contained: load it alone, without the rest of wps_sam.
spec = importlib.util.spec_from_file_location("standalone_compat", sys.argv[1])
compat = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compat)
from detectron2 import _C
print(json.dumps({"needed": needed, "applied": compat.APPLIED, "again": compat.apply_all()}))
"""


def test_fresh_interpreter_applies_exactly_what_is_missing():
    path = importlib.util.find_spec("wps_sam.compat").origin
    result = subprocess.run(
        [sys.executable, "-c", _FRESH_PROCESS, path], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["applied"] == report["needed"]
    assert report["again"] == report["needed"]
