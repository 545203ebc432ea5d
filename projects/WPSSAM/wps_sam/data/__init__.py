# Importing this package registers the datasets in detectron2's DatasetCatalog/MetadataCatalog.
from . import datasets  # noqa: F401
from .dataset_mappers.wps_sam_dataset_mapper import WPSSAMDatasetMapper  # noqa: F401
