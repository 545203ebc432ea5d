"""WPS-SAM: weakly-supervised part segmentation with a frozen SAM, as a detectron2 project."""

# The compatibility layer must run before anything imports detectron2.
from . import compat  # noqa: F401  isort:skip

# Registers the datasets (PartImageNet, PASCAL-Part, synthetic parts) in detectron2's catalogs.
from . import data  # noqa: F401
from .config import add_wps_sam_config  # noqa: F401
from .det_sam_model import DetSAM  # noqa: F401  registers Det-SAM and the SAM-encoder backbone
from .gt_prompted_sam_model import SAMGTPrompted  # noqa: F401  registers the GT-prompted baseline
from .wps_sam_model import WPSSAM  # noqa: F401  registers the meta-architecture

__version__ = "0.1.0"
