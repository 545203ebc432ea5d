"""Engine pieces of WPS-SAM: the trainer and config setup of tools/train_net.py, a validating
predictor and checkpointer, training hooks."""

from .checkpointer import CheckpointFileError, WPSSAMCheckpointer  # noqa: F401
from .exact_resume import ExactResumeMixin  # noqa: F401
from .predictor import WPSSAMPredictor, read_image_file, to_bgr_image  # noqa: F401
from .startup_summary import log_startup_summary, startup_summary  # noqa: F401
from .train_setup import setup  # noqa: F401
from .train_time_hook import TrainTimeHook  # noqa: F401
from .trainer import Trainer, save_results  # noqa: F401
from .training_state_hook import TrainingStateHook  # noqa: F401
