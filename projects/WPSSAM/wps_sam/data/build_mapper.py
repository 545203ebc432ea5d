"""The dataset mapper of each meta-architecture that tools/train_net.py trains and evaluates."""

from detectron2.data import DatasetMapper

from .dataset_mappers.det_sam_dataset_mapper import DetSAMDatasetMapper
from .dataset_mappers.wps_sam_dataset_mapper import WPSSAMDatasetMapper

__all__ = ["build_mapper"]


def build_mapper(cfg, is_train: bool):
    """WPSSAMDatasetMapper for WPS-SAM and the GT-prompted SAM baseline (both read images in SAM's
    frame and its cached embeddings), DetSAMDatasetMapper for Det-SAM, and detectron2's own
    DatasetMapper for any built-in model (e.g. SemanticSegmentor trained on SAM pseudo-labels)."""
    arch = cfg.MODEL.META_ARCHITECTURE
    if arch in ("WPSSAM", "SAMGTPrompted"):
        return WPSSAMDatasetMapper(cfg, is_train=is_train)
    if arch == "DetSAM":
        return DetSAMDatasetMapper(cfg, is_train=is_train)
    return DatasetMapper(cfg, is_train=is_train)
