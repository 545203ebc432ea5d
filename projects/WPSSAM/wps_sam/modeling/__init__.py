from .criterion import SetCriterion  # noqa: F401
from .frozen_sam import FrozenFoundation, FrozenSAM, build_frozen_foundation  # noqa: F401
from .matcher import HungarianMatcher  # noqa: F401
from .prompter import QueryPrompter  # noqa: F401
from .sam_builder import (  # noqa: F401
    SamArchitecture,
    SamCheckpointError,
    build_sam,
    build_sam_from_cfg,
    load_sam_checkpoint,
)
from .targets import WeakLabelTargets  # noqa: F401
from .teacher import PromptEncoderTeacher  # noqa: F401
