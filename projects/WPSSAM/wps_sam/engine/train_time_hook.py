"""A hook that records the wall time spent training, for curves plotted against time."""

import time

from detectron2.engine import HookBase

__all__ = ["TrainTimeHook"]


class TrainTimeHook(HookBase):
    """Puts ``train_seconds`` in the event storage after every step: the wall time spent in
    training steps since iteration 0 (data loading, forward, backward, optimizer), without the
    evaluation, checkpointing and writing that hooks do after a step. Kept in checkpoints, so the
    count continues across ``--resume``. Put it before the evaluation hook."""

    def __init__(self):
        self._seconds = 0.0
        self._step_start = None

    def before_step(self):
        self._step_start = time.perf_counter()

    def after_step(self):
        self._seconds += time.perf_counter() - self._step_start
        self.trainer.storage.put_scalar("train_seconds", self._seconds, smoothing_hint=False)

    def state_dict(self):
        return {"seconds": self._seconds}

    def load_state_dict(self, state_dict):
        self._seconds = float(state_dict["seconds"])
