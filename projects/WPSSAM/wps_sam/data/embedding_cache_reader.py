"""The reader of the embedding cache: :class:`EmbeddingCache` serves the float16 shards (memory-
mapped) and the old per-image ``.pt`` files to the dataset mappers (see
:mod:`wps_sam.data.embedding_cache` for the format)."""

import json
import logging
import os
import threading
from typing import Dict, List, Optional

import numpy as np
import torch

from .embedding_cache_format import check_shard, image_stem, index_path, shard_files

__all__ = ["EmbeddingCache"]

logger = logging.getLogger(__name__)


class EmbeddingCache:
    """Reads embeddings from a cache folder (format 2, with a fallback to per-image ``.pt``).

    Args:
        cache_dir: the folder.
        keys: :func:`cache_keys` of the reading config; entries with other keys are stale.
        shape: expected ``(D, E, E)`` of an embedding, or None.

    :meth:`get` returns a float32 ``D x E x E`` tensor, or None when the image must be encoded
    (not cached, or stale: warned once per image with the reason).
    """

    def __init__(self, cache_dir: str, keys: Optional[dict] = None, shape=None):
        self.cache_dir = cache_dir
        self.keys = keys
        self.shape = tuple(shape) if shape is not None else None
        self._entries: Optional[Dict[str, List[dict]]] = None
        self._maps: Dict[str, np.ndarray] = {}
        self._warned = set()
        self._lock = threading.Lock()

    def load_index(self):
        """(Re)read every shard index of the folder."""
        entries: Dict[str, List[dict]] = {}
        for shard in shard_files(self.cache_dir):
            index_file = index_path(shard)
            if not os.path.exists(index_file):
                continue  # a shard whose build was killed before its index: never valid
            with open(index_file) as f:
                index = json.load(f)
            for row, e in enumerate(index["entries"]):
                entries.setdefault(e["image"], []).append(
                    {**e, "row": row, "shard": shard, "index": index}
                )
        for candidates in entries.values():
            candidates.sort(key=lambda e: e["encoded_at"], reverse=True)
        self._entries = entries
        self._maps = {}
        return self

    def __len__(self):
        if self._entries is None:
            self.load_index()
        return len(self._entries)

    def _warn_once(self, file_name, message):
        with self._lock:
            if file_name in self._warned:
                return
            self._warned.add(file_name)
        logger.warning(message)

    def stale_reason(self, entry: dict, file_name: str) -> Optional[str]:
        """Why ``entry`` may not serve the image ``file_name`` (None when it may)."""
        index = entry["index"]
        if self.keys is not None:
            for key in ("encoder", "preprocessing"):
                if index[key] != self.keys[key]:
                    return f"made with another {key} ({index[key]}, this config: {self.keys[key]})"
        if os.path.exists(file_name):
            st = os.stat(file_name)
            if st.st_size != entry["image_bytes"] or st.st_mtime > entry["encoded_at"]:
                return "the image file changed after it was encoded"
        return None

    def _array(self, shard: str, index: dict) -> np.ndarray:
        array = self._maps.get(shard)
        if array is None:
            problem = check_shard(shard, index)
            if problem is not None:
                raise ValueError(
                    f"Embedding cache shard {problem}. Rebuild the cache with "
                    "tools/cache_embeddings.py (it deletes invalid shards and re-encodes their "
                    "images) or delete INPUT.EMBEDDING_CACHE_DIR."
                )
            array = np.load(shard, mmap_mode="r")
            if list(array.shape) != index["shape"]:
                raise ValueError(
                    f"Embedding cache shard {shard} holds {list(array.shape)}, its index says "
                    f"{index['shape']}: rebuild the cache with tools/cache_embeddings.py."
                )
            self._maps[shard] = array
        return array

    def get(self, file_name: str) -> Optional[torch.Tensor]:
        if self._entries is None:
            self.load_index()
        candidates = self._entries.get(image_stem(file_name), [])
        reasons = []
        for entry in candidates:
            reason = self.stale_reason(entry, file_name)
            if reason is None:
                array = self._array(entry["shard"], entry["index"])
                embedding = torch.from_numpy(np.array(array[entry["row"]], dtype=np.float32))
                return self._checked(embedding, entry["shard"])
            reasons.append(reason)
        if reasons:
            self._warn_once(
                file_name,
                f"Cached embedding of {file_name} in {self.cache_dir} is stale ({reasons[0]}): "
                "the encoder recomputes it. Rerun tools/cache_embeddings.py to refresh the cache.",
            )
            return None
        legacy = os.path.join(self.cache_dir, image_stem(file_name) + ".pt")
        if os.path.exists(legacy):
            self._warn_once(
                "legacy",
                f"{self.cache_dir} holds float32 per-image .pt embeddings (the old cache format): "
                "they are read, but tools/cache_embeddings.py rebuilds the folder as float16 "
                "shards (half the size, memory-mapped).",
            )
            embedding = torch.load(legacy, map_location="cpu", weights_only=True)
            return self._checked(embedding, legacy).float()
        self._warn_once(
            "missing",
            f"{file_name} (and maybe more images) has no embedding in {self.cache_dir}: the "
            "encoder runs for it. Run tools/cache_embeddings.py to cache every image.",
        )
        return None

    def _checked(self, embedding, path):
        if not isinstance(embedding, torch.Tensor) or (
            self.shape is not None and tuple(embedding.shape) != self.shape
        ):
            got = tuple(embedding.shape) if isinstance(embedding, torch.Tensor) else type(embedding)
            raise ValueError(
                f"Cached image embedding {path} has shape {got}, expected {self.shape} "
                "for this SAM (PROMPT_EMBED_DIM x IMAGE_SIZE/PATCH_SIZE squared). The cache was "
                "made by another SAM: delete it or point INPUT.EMBEDDING_CACHE_DIR elsewhere."
            )
        return embedding
