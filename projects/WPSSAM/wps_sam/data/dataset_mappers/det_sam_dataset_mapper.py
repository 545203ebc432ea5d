"""The dataset mapper of Det-SAM: detectron2's ``DatasetMapper`` (the detector's own augmentation
and box handling), trained from part boxes only, plus SAM's cached image embedding."""

import logging

from detectron2.config import configurable
from detectron2.data import DatasetMapper

from ...modeling.sam_builder import SAM_PIXEL_MEAN, SAM_PIXEL_STD
from ..embedding_cache_format import cache_keys
from ..embedding_cache_reader import EmbeddingCache

__all__ = [
    "SAM_PIXEL_MEAN",
    "SAM_PIXEL_STD",
    "DetSAMDatasetMapper",
    "sam_cache_keys",
    "sam_frame_augmentation",
]

logger = logging.getLogger(__name__)


def sam_cache_keys(cfg) -> dict:
    """The embedding-cache keys of ``cfg``'s SAM under SAM's own preprocessing (RGB, SAM's pixel
    mean/std), whatever the detector's INPUT.FORMAT and MODEL.PIXEL_MEAN/STD: Det-SAM's SAM always
    sees SAM's input, so it shares the cache of WPS-SAM with the same SAM."""
    sam_cfg = cfg.clone()
    sam_cfg.defrost()
    sam_cfg.INPUT.FORMAT = "RGB"
    sam_cfg.MODEL.PIXEL_MEAN = list(SAM_PIXEL_MEAN)
    sam_cfg.MODEL.PIXEL_STD = list(SAM_PIXEL_STD)
    return cache_keys(sam_cfg)


def sam_frame_augmentation(cfg, is_train: bool) -> bool:
    """Whether the detector's input transform is SAM's own (resize the longest side to
    MODEL.SAM.IMAGE_SIZE, no flip), so that a cached SAM embedding describes the detector's input
    too (what the SAM-encoder backbone needs to read the cache)."""
    size = cfg.MODEL.SAM.IMAGE_SIZE
    if is_train:
        return (
            tuple(cfg.INPUT.MIN_SIZE_TRAIN) == (size,)
            and cfg.INPUT.MAX_SIZE_TRAIN == size
            and cfg.INPUT.RANDOM_FLIP == "none"
            and not cfg.INPUT.CROP.ENABLED
        )
    return cfg.INPUT.MIN_SIZE_TEST == size and cfg.INPUT.MAX_SIZE_TEST == size


class DetSAMDatasetMapper(DatasetMapper):
    """detectron2's :class:`~detectron2.data.DatasetMapper` for Det-SAM.

    * The label map ``sem_seg_file_name`` is never read (the detector learns from part boxes; the
      evaluators read the label maps themselves).
    * With ``embedding_cache_dir``, the cached SAM image embedding (see
      :mod:`wps_sam.data.embedding_cache`, read with SAM's own preprocessing keys) is added
      as ``"image_embedding"`` (float (D, E, E)) when it exists: at inference Det-SAM's SAM then
      skips its encoder. In training it is only read for the SAM-encoder backbone under SAM's own
      transform (:func:`sam_frame_augmentation`); any other backbone does not use it.

    Returns ``DatasetMapper``'s dict: "image" (3, h, w) uint8 in INPUT.FORMAT, "height", "width",
    "file_name", "image_id", "instances" (training: gt_boxes, gt_classes), maybe "image_embedding".
    """

    @configurable
    def __init__(
        self,
        is_train=True,
        *,
        embedding_cache_dir="",
        embedding_shape=None,
        embedding_cache_keys=None,
        **kwargs,
    ):
        """
        Args:
            is_train, kwargs: see ``DatasetMapper``.
            embedding_cache_dir (str): folder of cached SAM embeddings; "" = off.
            embedding_shape (tuple or None): expected (D, E, E) of a cached embedding.
            embedding_cache_keys (dict or None): the cache keys of SAM's own preprocessing
                (:func:`sam_cache_keys`); entries made with other keys are stale.
        """
        super().__init__(is_train, **kwargs)
        self.embedding_cache_dir = embedding_cache_dir
        self.embedding_shape = tuple(embedding_shape) if embedding_shape is not None else None
        self.embedding_cache_keys = embedding_cache_keys
        self._embedding_cache = None

    @classmethod
    def from_config(cls, cfg, is_train=True):
        ret = super().from_config(cfg, is_train)
        cache = cfg.INPUT.EMBEDDING_CACHE_DIR
        if cache and is_train:
            uses_cache = cfg.MODEL.BACKBONE.NAME == "build_sam_encoder_backbone"
            if uses_cache and not sam_frame_augmentation(cfg, True):
                logger.info(
                    "[DetSAMDatasetMapper] training augmentation is not SAM's own transform: the "
                    "SAM-encoder backbone encodes every training image (embedding cache off)."
                )
            if not (uses_cache and sam_frame_augmentation(cfg, True)):
                cache = ""
        side = cfg.MODEL.SAM.IMAGE_SIZE // cfg.MODEL.SAM.PATCH_SIZE
        ret["embedding_cache_dir"] = cache
        ret["embedding_shape"] = (cfg.MODEL.SAM.PROMPT_EMBED_DIM, side, side)
        ret["embedding_cache_keys"] = sam_cache_keys(cfg) if cache else None
        return ret

    def _load_embedding(self, file_name):
        """The cached float32 embedding of ``file_name``, or None (SAM's encoder computes it)."""
        if self._embedding_cache is None:
            self._embedding_cache = EmbeddingCache(
                self.embedding_cache_dir, self.embedding_cache_keys, self.embedding_shape
            )
        return self._embedding_cache.get(file_name)

    def __call__(self, dataset_dict):
        dataset_dict = {k: v for k, v in dataset_dict.items() if k != "sem_seg_file_name"}
        out = super().__call__(dataset_dict)
        if self.embedding_cache_dir:
            embedding = self._load_embedding(out["file_name"])
            if embedding is not None:
                out["image_embedding"] = embedding
        return out
