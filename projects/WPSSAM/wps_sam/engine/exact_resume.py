"""A ``DefaultTrainer`` mixin whose checkpoints hold everything an exact ``--resume`` needs."""

from .training_state_hook import TrainingStateHook

__all__ = ["ExactResumeMixin"]


class ExactResumeMixin:
    """
    Mix into a :class:`detectron2.engine.DefaultTrainer` subclass (``class Trainer(
    ExactResumeMixin, DefaultTrainer)``) whose ``build_train_loader`` returns a
    ``wps_sam.data.ResumableTrainLoader``. Checkpoints (``model_*.pth``) then hold:

    * ``"model"``: the trainable weights (detectron2);
    * ``"trainer"``: ``"iteration"``; ``"hooks"``: the LR scheduler (detectron2's ``LRScheduler``
      hook) and :class:`TrainingStateHook` (sampler seed, RNG states); and ``"_trainer"``: the
      optimizer state (and AMP's grad scaler), which detectron2 v0.6's ``DefaultTrainer`` does not
      save (later detectron2 versions do, under the same key), so that Adam's moments survive.

    ``--resume`` restores all of it, and the loader continues the data order at the next batch.
    """

    def build_hooks(self):
        # First in the list: its state is captured before any other hook runs after a step.
        return [TrainingStateHook(self.data_loader)] + super().build_hooks()

    def state_dict(self):
        ret = super().state_dict()
        ret["_trainer"] = self._trainer.state_dict()
        return ret

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        if "_trainer" in state_dict:
            self._trainer.load_state_dict(state_dict["_trainer"])
