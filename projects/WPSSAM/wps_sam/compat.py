"""Compatibility layer between detectron2 v0.6 and today's NumPy, Pillow and packaging.

``wps_sam/__init__.py`` imports this module before anything imports detectron2. Each shim is applied
only where the installed stack lacks what detectron2 v0.6 uses, so it does nothing on an environment
that does not need it (an older NumPy/Pillow, or a detectron2 built from source with its ops):

* ``np.int``, ``np.float``, ``np.bool``, ``np.str`` were removed in NumPy 1.24; ``SemSegEvaluator``
  and ``BitMasks`` still use them. They are restored as the builtins they aliased.
* ``PIL.Image.LINEAR`` was removed in Pillow 10; ``detectron2.data.transforms`` uses it as a default
  argument at import time. It is restored as ``Image.BILINEAR`` (what it always meant).
* ``detectron2._C`` (the compiled C++/CUDA ops) is missing when detectron2's Python sources were
  installed without building them (see ``tools/install_detectron2.py``). ``detectron2.layers``
  imports it at module level, so a placeholder module is registered; using any op from it raises
  :class:`MissingDetectron2OpsError` naming the op and how to get it. Only rotated boxes, deformable
  convolution and the fast COCO evaluator need these ops; nothing in WPS-SAM does.

:data:`APPLIED` lists the shims this process needed, for bug reports.
"""

import importlib.util
import sys
import types
import warnings

__all__ = ["APPLIED", "MissingDetectron2OpsError", "apply_all"]

APPLIED = []

_NUMPY_ALIASES = {"int": int, "float": float, "bool": bool, "str": str}


class MissingDetectron2OpsError(RuntimeError):
    """Raised when code needs one of detectron2's compiled ops and they were not built."""


def patch_numpy_aliases(np_module):
    """Restore the removed NumPy scalar aliases that are missing. Returns the names restored."""
    restored = []
    for name, builtin in _NUMPY_ALIASES.items():
        # numpy>=1.24 raises AttributeError (with a hint; a FutureWarning for some) from its
        # module __getattr__ for these.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            present = hasattr(np_module, name)
        if not present:
            setattr(np_module, name, builtin)
            restored.append(f"numpy.{name}")
    return restored


def patch_pil_linear(image_module):
    """Restore ``Image.LINEAR`` if this Pillow lacks it. Returns the names restored."""
    if hasattr(image_module, "LINEAR"):
        return []
    image_module.LINEAR = image_module.BILINEAR
    return ["PIL.Image.LINEAR"]


class _MissingOpsModule(types.ModuleType):
    """Stands in for ``detectron2._C``: importable, but every op raises a clear error."""

    # detectron2.utils.collect_env (logged by engine.default_setup) asks the ops for these.
    def get_compiler_version(self):
        return "not compiled (wps_sam placeholder for detectron2._C)"

    def get_cuda_version(self):
        return "not compiled"

    def has_cuda(self):
        return False

    def __getattr__(self, name):
        if name.startswith("__"):
            # Keep introspection (pickle, inspect, hasattr on dunders) working normally.
            raise AttributeError(name)
        raise MissingDetectron2OpsError(
            f"detectron2._C.{name} is not available: this detectron2 was installed from its Python "
            "sources without compiling its C++/CUDA ops (rotated boxes, deformable convolution, "
            "fast COCO evaluation). WPS-SAM does not need them. If you do, build detectron2 from "
            "source (https://detectron2.readthedocs.io/en/latest/tutorials/install.html) in this "
            "environment; tools/install_detectron2.py leaves an importable detectron2 alone."
        )


def patch_missing_ops(modules=None):
    """Register a placeholder ``detectron2._C`` if the compiled ops are missing."""
    modules = sys.modules if modules is None else modules
    if "detectron2._C" in modules:
        return []
    # find_spec raises ValueError on our own placeholder (its __spec__ is None): a placeholder in
    # sys.modules already tells that the ops are missing.
    if not isinstance(sys.modules.get("detectron2._C"), _MissingOpsModule):
        if importlib.util.find_spec("detectron2") is None:
            return []
        if importlib.util.find_spec("detectron2._C") is not None:  # also imports detectron2
            return []
    placeholder = _MissingOpsModule("detectron2._C", "placeholder: detectron2 ops not compiled")
    modules["detectron2._C"] = placeholder
    parent = modules.get("detectron2")
    if parent is not None:
        parent._C = placeholder
    return ["detectron2._C (placeholder)"]


def apply_all():
    """Apply every shim this environment needs; safe to call more than once."""
    import numpy as np
    from PIL import Image

    for restored in (patch_numpy_aliases(np), patch_pil_linear(Image), patch_missing_ops()):
        APPLIED.extend(name for name in restored if name not in APPLIED)
    return list(APPLIED)


apply_all()
