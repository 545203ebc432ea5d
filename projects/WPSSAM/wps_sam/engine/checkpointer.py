"""detectron2's checkpointer with clear errors for checkpoint files that cannot be used."""

import os
import pickle

import torch
from detectron2.checkpoint import DetectionCheckpointer

__all__ = ["CheckpointFileError", "WPSSAMCheckpointer"]


class CheckpointFileError(RuntimeError):
    """A model checkpoint (MODEL.WEIGHTS) is missing, unreadable or not a checkpoint."""


class WPSSAMCheckpointer(DetectionCheckpointer):
    """:class:`~detectron2.checkpoint.DetectionCheckpointer` whose failures name the file.

    * a missing file raises :class:`CheckpointFileError` (detectron2: ``AssertionError``);
    * every file is read with ``torch.load(weights_only=True)``: a file holding pickled Python code
      is refused, never executed; for a WPS-SAM model ``.pkl`` files (detectron2's model-zoo
      format, read with Python's ``pickle``, which runs code; no WPS-SAM checkpoint is one) are
      refused outright, other models (Det-SAM's detector) keep detectron2's reading of them;
    * a truncated file or one that is not a checkpoint raises :class:`CheckpointFileError` naming
      it and saying what to do (torch and zipfile errors name no file).

    A checkpoint that loads but lacks the prompter's weights (a SAM state dict given as
    MODEL.WEIGHTS, another config's checkpoint) is refused by :class:`~wps_sam.WPSSAM` itself,
    whichever checkpointer loads it.
    """

    def load(self, path, checkpointables=None):
        if path and not os.path.isfile(path) and "://" not in path:
            raise CheckpointFileError(
                f"Checkpoint not found: {path!r} (MODEL.WEIGHTS). Point MODEL.WEIGHTS at a "
                "model_*.pth written by tools/train_net.py (OUTPUT_DIR), or leave it empty to "
                "start from a random prompter."
            )
        return super().load(path, checkpointables=checkpointables)

    def _load_file(self, filename):
        from ..wps_sam_model import WPSSAM

        if filename.endswith((".pkl", ".pyth")):
            if not isinstance(self.model, WPSSAM):
                return super()._load_file(filename)
            raise CheckpointFileError(
                f"{filename!r} is a {os.path.splitext(filename)[1]} file, read with Python's "
                "pickle (which can run code): "
                "refused. WPS-SAM checkpoints are .pth files written by torch.save."
            )
        try:
            loaded = torch.load(filename, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - zipfile/torch errors that name no file
            lines = str(e).splitlines() or [""]
            first_line = next((ln.strip() for ln in lines if "Unsupported" in ln), lines[0])
            if isinstance(e, pickle.UnpicklingError) and "Unsupported global" in str(e):
                raise CheckpointFileError(
                    f"Refused to load {filename!r}: it holds pickled Python objects other than "
                    "tensors and plain containers, which torch.load(weights_only=True) does not "
                    f"run (they can execute code; torch says: {first_line}). If you trust its "
                    "origin, re-save its weights: torch.save({'model': state_dict}, 'clean.pth')."
                ) from e
            raise CheckpointFileError(
                f"Cannot read checkpoint {filename!r}: {type(e).__name__}: {first_line}. It is "
                "truncated (an interrupted copy or download: copy it again) or not a file written "
                "by torch.save."
            ) from e
        if not isinstance(loaded, dict) or not loaded:
            raise CheckpointFileError(
                f"{filename!r} holds a {type(loaded).__name__}, not a checkpoint (a dict with a "
                "'model' state dict, as tools/train_net.py writes)."
            )
        if "model" not in loaded:
            loaded = {"model": loaded}
        if not isinstance(loaded["model"], dict) or not all(
            isinstance(v, torch.Tensor) for v in loaded["model"].values()
        ):
            raise CheckpointFileError(
                f"{filename!r} is not a model checkpoint: its 'model' entry is not a state dict of "
                "tensors."
            )
        return loaded
