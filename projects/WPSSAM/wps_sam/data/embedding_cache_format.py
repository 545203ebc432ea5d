"""The key scheme and file layout of the embedding cache (format 2, see
:mod:`wps_sam.data.embedding_cache` and docs/PERFORMANCE.md).

What identifies an embedding (the SAM that made it and the preprocessing of its image), how its
image is named in the cache, and where a shard's data and index live. Imports nothing of the
project: the reader, the writer and the dataset mappers all depend on it.
"""

import glob
import hashlib
import json
import os
from typing import Dict, List, Optional

__all__ = [
    "CACHE_FORMAT",
    "INFO_FILE",
    "cache_info",
    "cache_keys",
    "check_shard",
    "image_stem",
    "index_path",
    "legacy_files",
    "preprocessing",
    "sam_fingerprint",
    "shard_files",
]

INFO_FILE = "cache_info.json"
CACHE_FORMAT = 2
_SHA_MEMO: Dict[tuple, str] = {}


def _file_sha256(path: str) -> str:
    st = os.stat(path)
    memo_key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    if memo_key not in _SHA_MEMO:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _SHA_MEMO[memo_key] = h.hexdigest()
    return _SHA_MEMO[memo_key]


# MODEL.SAM keys about decoding and checkpoints, not the encoder (left out of the fingerprint).
NON_ENCODER_SAM_KEYS = ("MASK_THRESHOLD", "MASK_UPSAMPLE", "SAVE_FROZEN_WEIGHTS")


def sam_fingerprint(cfg) -> dict:
    """What identifies the embeddings of a SAM: its architecture keys and checkpoint digest.

    The encoder's autocast precision (MODEL.SAM.ENCODER_AUTOCAST) is left out: a cache built
    under bf16 serves an fp32 config and the other way round (the cache stores float16 anyway).
    """
    checkpoint = cfg.MODEL.SAM.CHECKPOINT
    digest = _file_sha256(checkpoint) if checkpoint else "random-weights"
    arch = {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in cfg.MODEL.SAM.items()}
    # Keys that do not change the image encoder's output: the encoder's autocast (above) and the
    # decoder / checkpoint options, so that setting them never invalidates a cache.
    for key in ("CHECKPOINT", "ENCODER_AUTOCAST", *NON_ENCODER_SAM_KEYS):
        arch.pop(key, None)
    return {"sam": arch, "checkpoint_sha256": digest}


def preprocessing(cfg) -> dict:
    """What the mapper and the model do to an image before the encoder sees it."""
    return {
        "image_size": int(cfg.MODEL.SAM.IMAGE_SIZE),
        "pixel_mean": [float(v) for v in cfg.MODEL.PIXEL_MEAN],
        "pixel_std": [float(v) for v in cfg.MODEL.PIXEL_STD],
        "format": cfg.INPUT.FORMAT,
        "resize": "ResizeLongestSide, zero pad bottom-right",
    }


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def cache_keys(cfg) -> dict:
    """{"encoder", "preprocessing"}: short digests that every shard index records."""
    return {"encoder": _digest(sam_fingerprint(cfg)), "preprocessing": _digest(preprocessing(cfg))}


def cache_info(cfg) -> dict:
    """The content of ``cache_info.json`` for a folder built with ``cfg``."""
    return {
        "format": CACHE_FORMAT,
        "dtype": "float16",
        **sam_fingerprint(cfg),
        "preprocessing": preprocessing(cfg),
        "keys": cache_keys(cfg),
    }


def image_stem(file_name: str) -> str:
    """The key of an image in the cache: its file name without folder and extension.

    The stem (e.g. ``n01440764_10043``) is used rather than ``image_id`` because it is unique
    across the splits of PartImageNet and PASCAL-Part, whereas COCO-style image ids restart in
    every split's JSON.
    """
    return os.path.splitext(os.path.basename(file_name))[0]


def legacy_files(cache_dir: str) -> List[str]:
    """The old format's per-image float32 ``<stem>.pt`` files in ``cache_dir``."""
    return glob.glob(os.path.join(glob.escape(cache_dir), "*.pt"))


def shard_files(cache_dir: str) -> List[str]:
    """The data files of every shard (``shard-*.npy``), complete or not, sorted."""
    return sorted(glob.glob(os.path.join(glob.escape(cache_dir), "shard-*.npy")))


def index_path(shard_path: str) -> str:
    """The index (``.json``) of the shard whose data file is ``shard_path`` (``.npy``)."""
    return shard_path[: -len(".npy")] + ".json"


def check_shard(shard_path: str, index: dict) -> Optional[str]:
    """Why the data file of a shard does not match its index (None when it does)."""
    if not os.path.exists(shard_path):
        return f"its data file {shard_path} is missing"
    size = os.path.getsize(shard_path)
    if size != index["nbytes"]:
        return (
            f"{shard_path} has {size} bytes, its index {index_path(shard_path)} says "
            f"{index['nbytes']} (truncated or overwritten)"
        )
    return None
