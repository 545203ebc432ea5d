"""DefaultPredictor for WPS-SAM: validates and converts its input instead of failing deep inside.

detectron2's :class:`~detectron2.engine.DefaultPredictor` indexes ``image[:, :, ::-1]`` and hands
the result to the model: a 2-D grayscale array raises ``IndexError`` there, an empty array a
``RuntimeError`` from torch's interpolation, an RGBA array a broadcasting error, and a 16-bit or
``[0, 1]`` float array gives a silently wrong segmentation. :class:`WPSSAMPredictor` accepts what a
user naturally has and refuses, with what to do, what it cannot segment correctly.
"""

import logging
import os

import numpy as np
import torch
from detectron2.data import MetadataCatalog
from detectron2.data import transforms as T
from detectron2.engine import DefaultPredictor
from detectron2.modeling import build_model
from PIL import Image, ImageOps

from .checkpointer import WPSSAMCheckpointer

__all__ = ["WPSSAMPredictor", "read_image_file", "to_bgr_image"]

logger = logging.getLogger(__name__)


def _pil_to_bgr(pil: Image.Image) -> np.ndarray:
    """A PIL image (any mode) -> (H, W, 3) BGR uint8, EXIF orientation applied.

    16-bit images are scaled to 8 bits (PIL's own conversion would clip them to white).
    """
    pil = ImageOps.exif_transpose(pil)
    if pil.mode.startswith("I;16") or pil.mode in ("I", "F"):
        array = np.asarray(pil)
        if pil.mode.startswith("I;16") or float(array.max(initial=0)) > 255:
            array = array.astype(np.float64) / 257.0
        array = np.clip(np.round(array), 0, 255).astype(np.uint8)
        return np.repeat(array[:, :, None], 3, axis=2)
    return np.ascontiguousarray(np.asarray(pil.convert("RGB"))[:, :, ::-1])


def read_image_file(path) -> np.ndarray:
    """Read an image file as an (H, W, 3) BGR uint8 array (EXIF orientation applied; 16-bit
    images scaled to 8 bits).

    Raises ``FileNotFoundError`` or ``OSError`` naming the file (PIL's errors name none).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Image file not found: {path!r}")
    try:
        with Image.open(path) as pil:
            return _pil_to_bgr(pil)
    except Exception as e:  # noqa: BLE001 - PIL raises several types, none naming the file
        raise OSError(
            f"Cannot read image {path!r}: {type(e).__name__}: {e}. The file is truncated or not an "
            "image (JPEG, PNG, ...): re-copy or re-export it."
        ) from e


def _check_values(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    if image.dtype == bool or not (
        np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)
    ):
        raise ValueError(
            f"Image of dtype {image.dtype}: expected uint8 (0..255) pixel values; convert it, "
            "e.g. image.astype(np.uint8) * 255 for a boolean mask."
        )
    if np.issubdtype(image.dtype, np.floating) and not np.isfinite(image).all():
        raise ValueError("Image holds NaN or infinite values.")
    lo, hi = float(image.min()), float(image.max())
    if lo < 0 or hi > 255:
        raise ValueError(
            f"Image of dtype {image.dtype} has values in [{lo:g}, {hi:g}], outside 0..255: the "
            "model expects 8-bit pixel values. Scale it first (16-bit: (image // 257)"
            ".astype(np.uint8))."
        )
    if np.issubdtype(image.dtype, np.floating):
        if 0 < hi <= 1.0 and not np.array_equal(image, np.round(image)):
            raise ValueError(
                f"Float image with values in [{lo:g}, {hi:g}] looks scaled to [0, 1]; the model "
                "expects 0..255: pass (image * 255).astype(np.uint8)."
            )
        return image.astype(np.float32)
    return image.astype(np.uint8)


def to_bgr_image(image) -> np.ndarray:
    """Any usual image -> (H, W, 3) BGR array of 0..255 values (uint8, or float32 if given float).

    Accepts: a file path (read with EXIF orientation), a PIL image (RGB, L, RGBA, P, I;16 ...,
    EXIF applied), or a numpy array in DefaultPredictor's convention: (H, W, 3) BGR, (H, W) or
    (H, W, 1) grayscale (repeated to 3 channels), (H, W, 4) BGRA (alpha dropped).

    Raises ``TypeError``/``ValueError`` saying what is wrong for anything else: an empty image,
    other shapes, a torch tensor, 16-bit or out-of-range values, a float image in [0, 1].
    """
    if isinstance(image, (str, os.PathLike)):
        return read_image_file(image)
    if isinstance(image, Image.Image):
        return _pil_to_bgr(image)
    if isinstance(image, torch.Tensor):
        raise TypeError(
            "WPSSAMPredictor takes a numpy (H, W, 3) BGR array (cv2.imread), a PIL image or a file "
            "path, not a torch tensor; to pass a (3, H, W) RGB tensor, call the model directly: "
            "predictor.model([{'image': tensor}])."
        )
    if not isinstance(image, np.ndarray):
        raise TypeError(
            f"WPSSAMPredictor takes a numpy (H, W, 3) BGR array, a PIL image or a file path, not "
            f"a {type(image).__name__}."
        )
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(
            f"Image array of shape {image.shape}: expected (H, W, 3) BGR (as cv2.imread returns), "
            "(H, W) grayscale or (H, W, 4) BGRA. A (3, H, W) array is channels-first: pass "
            "image.transpose(1, 2, 0)."
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(
            f"Empty image ({image.shape[0]} x {image.shape[1]} pixels): there is nothing to "
            "segment. Skip it (a failed cv2.imread returns None, a failed crop an empty array)."
        )
    image = _check_values(image)
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    elif image.shape[2] == 4:
        image = image[:, :, :3]
    return np.ascontiguousarray(image)


class WPSSAMPredictor(DefaultPredictor):
    """detectron2's DefaultPredictor for a WPS-SAM config, with its input validated and converted.

    Like ``DefaultPredictor``: builds the model, loads ``cfg.MODEL.WEIGHTS`` (with
    :class:`WPSSAMCheckpointer`: clear errors for missing, truncated or unsafe files) and is
    called with one image, returning the model's output dict for it (``"sem_seg"`` (C+1, H, W),
    ``"instances"``). The image may be anything :func:`to_bgr_image` accepts.

    Attributes:
        large_output_bytes (int): above this estimate of the output's size in memory (the
            (C+1, H, W) float scores and the per-query masks at the original size) a warning says
            so; outputs are at the input's size, so a 6000 x 4000 photo with 59 classes needs
            about 6 GB.
    """

    def __init__(self, cfg, large_output_bytes=2 * 1024**3):
        self.cfg = cfg.clone()
        self.model = build_model(self.cfg)
        self.model.eval()
        if len(cfg.DATASETS.TEST):
            self.metadata = MetadataCatalog.get(cfg.DATASETS.TEST[0])
        WPSSAMCheckpointer(self.model).load(cfg.MODEL.WEIGHTS)
        # The model resizes with SAM's ResizeLongestSide itself (INPUT.MIN_SIZE_TEST 0: no-op).
        self.aug = T.ResizeShortestEdge(
            [cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MIN_SIZE_TEST], cfg.INPUT.MAX_SIZE_TEST
        )
        self.input_format = cfg.INPUT.FORMAT
        assert self.input_format in ["RGB", "BGR"], self.input_format
        self.large_output_bytes = large_output_bytes

    def __call__(self, original_image):
        """
        Args:
            original_image: (H, W, 3) BGR uint8 numpy array, (H, W) grayscale, (H, W, 4) BGRA,
                a PIL image or an image file path.

        Returns:
            dict: the model's output for the image (see :meth:`wps_sam.WPSSAM.forward`).
        """
        image = to_bgr_image(original_image)
        h, w = image.shape[:2]
        channels = self.model.num_classes + 1 + 2 * self.cfg.MODEL.WPS_SAM.NUM_QUERIES
        estimate = channels * h * w * 4
        if estimate > self.large_output_bytes:
            logger.warning(
                f"A {h} x {w} image: the output at the input's size needs about "
                f"{estimate / 1024**3:.1f} GiB of memory. If that is too much, downscale the "
                "image first (the model works at SAM's IMAGE_SIZE anyway)."
            )
        return super().__call__(image)
