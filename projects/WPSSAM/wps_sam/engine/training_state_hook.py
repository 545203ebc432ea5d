"""A hook that saves what detectron2's checkpoints lack for an exact resume: RNGs and data order."""

import logging
import random

import numpy as np
import torch
from detectron2.engine import HookBase

__all__ = ["TrainingStateHook", "get_rng_states", "set_rng_states"]

logger = logging.getLogger(__name__)


def get_rng_states() -> dict:
    """The states of Python's, NumPy's and torch's (CPU and CUDA) global RNGs, as tensors, ints
    and tuples only, so that a checkpoint holding them loads with ``torch.load(weights_only=True)``.
    """
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    states = {
        "python": (py_version, torch.tensor(py_state, dtype=torch.int64), py_gauss),
        "numpy": (
            np_name,
            torch.from_numpy(np_keys.astype(np.int64)),
            int(np_pos),
            int(np_has_gauss),
            float(np_gauss),
        ),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict):
    """Restore the RNG states returned by :func:`get_rng_states`."""
    py_version, py_state, py_gauss = states["python"]
    random.setstate((py_version, tuple(int(x) for x in py_state.tolist()), py_gauss))
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = states["numpy"]
    np.random.set_state(
        (np_name, np_keys.numpy().astype(np.uint32), np_pos, np_has_gauss, np_gauss)
    )
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class TrainingStateHook(HookBase):
    """
    Makes ``--resume`` continue a run exactly: detectron2's checkpointer already saves the model,
    optimizer, LR scheduler and iteration; this hook adds (through ``trainer.state_dict()``,
    which the checkpointer saves under ``"trainer"``) what it lacks:

    * ``"sampler_seed"``: the seed of the training sampler's shuffle;
    * ``"rng"``: the global Python/NumPy/torch RNG states when the checkpoint was written (the
      prompter's dropout draws from torch's);

    and, before the first resumed step, positions a :class:`wps_sam.data.ResumableTrainLoader` at
    the batch the run stopped at (``start_iter`` batches consumed: sampler offset
    ``start_iter x images per batch``, plus the images that detectron2's aspect-ratio grouping
    held back). Register it first (``hooks.insert(0, ...)``) so that its state is captured before
    other hooks run after a step. Stateless loaders (other samplers) restart their stream, with a
    warning. The data-loader workers' RNGs are not saved: the WPS-SAM mapper draws no random
    numbers (no augmentation), so they do not affect the data.

    State dict (saved under ``checkpoint["trainer"]["hooks"]["TrainingStateHook"]``): {
    "sampler_seed": int or None, "rng": :func:`get_rng_states` }.
    """

    def __init__(self, data_loader):
        """
        Args:
            data_loader: the trainer's training loader; a ``ResumableTrainLoader`` resumes its
                data order, anything else is left alone.
        """
        self._loader = data_loader
        self._resumable = hasattr(data_loader, "resume") and hasattr(data_loader, "sampler")
        self._rng_to_restore = None
        self._restored = False

    def state_dict(self):
        seed = self._loader.sampler.seed if self._resumable else None
        return {"sampler_seed": seed, "rng": get_rng_states()}

    def load_state_dict(self, state_dict):
        seed = state_dict.get("sampler_seed")
        if self._resumable and seed is not None:
            self._loader.sampler.set_seed(seed)
        # Applied in before_train, so that nothing run between loading and training (start-up
        # summaries, dataset registration) shifts the restored streams.
        self._rng_to_restore = state_dict.get("rng")
        self._restored = True

    def before_train(self):
        if self._rng_to_restore is not None:
            set_rng_states(self._rng_to_restore)
            self._rng_to_restore = None
        start_iter = self.trainer.start_iter
        if start_iter <= 0:
            return
        if not self._restored:
            logger.warning(
                f"Resuming at iteration {start_iter} from a checkpoint without TrainingStateHook "
                "state (written by an older version): RNG states and the sampler seed are not "
                "restored, so the run will not match an uninterrupted one exactly."
            )
        if not self._resumable:
            logger.warning(
                f"Resuming at iteration {start_iter} with a training loader that cannot resume "
                f"({type(self._loader).__name__}): its data order restarts from the beginning."
            )
            return
        where = self._loader.resume(start_iter)
        logger.info(
            f"Resuming the data order at iteration {start_iter}: sampler seed "
            f"{self._loader.sampler.seed}, {where['skip']} indices of this rank's stream consumed "
            f"(epoch {where['epoch']}, position {where['position']}), {where['pending']} held "
            "back by aspect-ratio grouping."
        )
