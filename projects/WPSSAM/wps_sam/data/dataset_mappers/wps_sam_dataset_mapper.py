"""The dataset mapper of WPS-SAM: a detectron2 dataset dict -> the model's input dict."""

import copy
import logging
import os
import threading
from collections import Counter

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import detection_utils as utils
from detectron2.structures import Boxes, BoxMode, Instances
from segment_anything.utils.transforms import ResizeLongestSide

from ..embedding_cache_format import cache_keys, image_stem
from ..embedding_cache_reader import EmbeddingCache

__all__ = ["WPSSAMDatasetMapper", "embedding_cache_path"]

logger = logging.getLogger(__name__)


def embedding_cache_path(cache_dir, file_name):
    """
    Where the old cache format (float32, one file per image, still read) kept the embedding of
    an image: ``<cache_dir>/<stem of file_name>.pt``. The current format (float16 shards, see
    :mod:`wps_sam.data.embedding_cache`) is keyed by the same stem.

    The stem (file name without folder and extension, e.g. ``n01440764_10043``) is used rather than
    ``image_id`` because it is unique across the splits of PartImageNet and PASCAL-Part, whereas
    COCO-style image ids restart in every split's JSON. A cache is tied to one SAM (variant,
    checkpoint, image size) and preprocessing: use one folder per SAM.
    """
    return os.path.join(cache_dir, image_stem(file_name) + ".pt")


class WPSSAMDatasetMapper:
    """
    Turn a dataset dict (see ``wps_sam.data.datasets``) into the input of ``wps_sam.WPSSAM``.

    1. Read the image as RGB (``cfg.INPUT.FORMAT``); an unreadable file raises ``OSError`` naming
       it. Resize it with SAM's ``ResizeLongestSide(cfg.MODEL.SAM.IMAGE_SIZE)`` (longest side =
       IMAGE_SIZE, aspect ratio kept, no padding: the model pads). No augmentation (the paper uses
       none), which is also what makes cached embeddings valid.
    2. Boxes: converted to XYXY, clipped to the original image, mapped with ``apply_boxes`` to the
       resized frame. Boxes with no area after clipping, and crowd annotations, are dropped; every
       drop is counted in :attr:`dropped_counts` (class-level, over all mapper instances of the
       process) and logged once per file with the file name.
    3. Evaluation only (``is_train=False``): the label map ``sem_seg_file_name`` is read at the
       original size. Training never reads the pixel masks (weak supervision).
    4. If ``cfg.INPUT.EMBEDDING_CACHE_DIR`` is set, the cached SAM image embedding is read from
       its float16 shards (memory-mapped, see :mod:`wps_sam.data.embedding_cache`) or from an
       old-format ``<stem>.pt``, and checked; a missing or stale one is left to the encoder.

    Returns a dict with:

    * ``"image"``: uint8 tensor ``3 x h' x w'`` (RGB, resized),
    * ``"height"``, ``"width"``: original image size; ``"file_name"``, ``"image_id"``,
    * ``"instances"`` (when the dataset dict has ``"annotations"``): ``Instances((h', w'))`` with
      ``gt_boxes`` (``Boxes``, XYXY in the resized frame) and ``gt_classes`` (int64, ``N``),
    * ``"sem_seg"`` (evaluation, when ``sem_seg_file_name`` is given): int64 tensor ``H x W``,
    * ``"image_embedding"`` (optional): float tensor ``D x E x E`` with ``D`` =
      ``cfg.MODEL.SAM.PROMPT_EMBED_DIM`` and ``E = IMAGE_SIZE / PATCH_SIZE``.
    """

    dropped_counts = Counter()
    _warned_files = set()
    _lock = threading.Lock()

    @configurable
    def __init__(
        self,
        is_train=True,
        *,
        image_format="RGB",
        image_size=1024,
        embedding_cache_dir="",
        embedding_shape=None,
        embedding_cache_keys=None,
    ):
        """
        Args:
            is_train (bool): training (no label map is read) or evaluation.
            image_format (str): format of ``read_image``; SAM expects ``"RGB"``.
            image_size (int): SAM's input side; the longest image side is resized to it.
            embedding_cache_dir (str): folder of cached image embeddings; "" disables the cache.
            embedding_shape (tuple or None): expected ``(D, E, E)`` of a cached embedding.
            embedding_cache_keys (dict or None): ``cache_keys(cfg)`` (encoder and preprocessing
                digests); cached entries made with other keys are stale.
        """
        self.is_train = is_train
        self.image_format = image_format
        self.transform = ResizeLongestSide(image_size)
        self.embedding_cache_dir = embedding_cache_dir
        self.embedding_shape = tuple(embedding_shape) if embedding_shape is not None else None
        self.embedding_cache_keys = embedding_cache_keys
        self._embedding_cache = None
        mode = "training" if is_train else "inference"
        logger.info(
            f"[WPSSAMDatasetMapper] {mode}: ResizeLongestSide({image_size}), "
            f"format {image_format}, embedding cache: {embedding_cache_dir or 'off'}"
        )

    @classmethod
    def from_config(cls, cfg, is_train=True):
        size = cfg.MODEL.SAM.IMAGE_SIZE
        side = size // cfg.MODEL.SAM.PATCH_SIZE
        keys = None
        if cfg.INPUT.EMBEDDING_CACHE_DIR:
            keys = cache_keys(cfg)
        return {
            "is_train": is_train,
            "image_format": cfg.INPUT.FORMAT,
            "image_size": size,
            "embedding_cache_dir": cfg.INPUT.EMBEDDING_CACHE_DIR,
            "embedding_shape": (cfg.MODEL.SAM.PROMPT_EMBED_DIM, side, side),
            "embedding_cache_keys": keys,
        }

    @classmethod
    def _count_drop(cls, reason, file_name, n):
        with cls._lock:
            cls.dropped_counts[reason] += n
            first = (file_name, reason) not in cls._warned_files
            cls._warned_files.add((file_name, reason))
        if first:
            logger.warning(
                f"[WPSSAMDatasetMapper] dropped {n} annotation(s) of {file_name}: {reason} "
                f"(total so far: {cls.dropped_counts[reason]})."
            )

    def _read_image(self, dataset_dict):
        file_name = dataset_dict["file_name"]
        try:
            image = utils.read_image(file_name, format=self.image_format)
        except Exception as e:
            raise OSError(
                f"Cannot read image {file_name}: {type(e).__name__}: {e}. It is missing, truncated "
                "or not an image: restore it from the dataset's archive, or remove it from the "
                "annotation JSON (docs/TROUBLESHOOTING.md: image files stop the run)."
            ) from e
        utils.check_image_size(dataset_dict, image)
        return image

    def _boxes_to_instances(self, annos, orig_hw, new_hw, file_name):
        h, w = orig_hw
        boxes, classes = [], []
        n_crowd = 0
        for obj in annos:
            if obj.get("iscrowd", 0) != 0:
                n_crowd += 1
                continue
            boxes.append(BoxMode.convert(list(obj["bbox"]), obj["bbox_mode"], BoxMode.XYXY_ABS))
            classes.append(int(obj["category_id"]))
        if n_crowd:
            self._count_drop("crowd annotation", file_name, n_crowd)
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        classes = np.asarray(classes, dtype=np.int64)
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, w)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, h)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        if not keep.all():
            self._count_drop("box with no area after clipping", file_name, int((~keep).sum()))
        boxes = self.transform.apply_boxes(boxes[keep], orig_hw)
        instances = Instances(new_hw)
        instances.gt_boxes = Boxes(torch.as_tensor(boxes, dtype=torch.float32))
        instances.gt_classes = torch.as_tensor(classes[keep], dtype=torch.int64)
        return instances

    def _load_embedding(self, file_name):
        """The cached float32 embedding of ``file_name``, or None (the encoder computes it)."""
        cache = self._embedding_cache
        if cache is None or cache.cache_dir != self.embedding_cache_dir:
            cache = EmbeddingCache(
                self.embedding_cache_dir, self.embedding_cache_keys, self.embedding_shape
            )
            self._embedding_cache = cache
        return cache.get(file_name)

    def __call__(self, dataset_dict):
        """
        Args:
            dataset_dict (dict): one image in detectron2's dataset format.

        Returns:
            dict: the model input described in the class docstring.
        """
        dataset_dict = copy.deepcopy(dataset_dict)
        file_name = dataset_dict["file_name"]
        image = self._read_image(dataset_dict)
        orig_hw = image.shape[:2]
        resized = self.transform.apply_image(image)
        new_hw = resized.shape[:2]
        dataset_dict["image"] = torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1)))
        dataset_dict["height"], dataset_dict["width"] = orig_hw

        annos = dataset_dict.pop("annotations", None)
        if annos is not None:
            dataset_dict["instances"] = self._boxes_to_instances(annos, orig_hw, new_hw, file_name)

        sem_seg_file = dataset_dict.get("sem_seg_file_name", None)
        if not self.is_train and sem_seg_file is not None:
            try:
                sem_seg = utils.read_image(sem_seg_file).astype("int64")
            except Exception as e:
                raise OSError(
                    f"Cannot read label map {sem_seg_file} of {file_name}: {type(e).__name__}: "
                    f"{e}. Restore it (or re-run the dataset's preparation script)."
                ) from e
            if sem_seg.ndim != 2 or sem_seg.shape != tuple(orig_hw):
                raise ValueError(
                    f"Label map {sem_seg_file} has shape {sem_seg.shape}, expected a "
                    f"single-channel map of the image size {tuple(orig_hw)} ({file_name}): the "
                    "label map belongs to another image or was resized; re-create it with the "
                    "dataset's preparation script."
                )
            dataset_dict["sem_seg"] = torch.as_tensor(sem_seg)

        if self.embedding_cache_dir:
            embedding = self._load_embedding(file_name)
            if embedding is not None:
                dataset_dict["image_embedding"] = embedding
        return dataset_dict
