"""How complete an embedding cache is for a config's datasets (for start-up summaries)."""

import os
from typing import Dict, Sequence

from detectron2.data import DatasetCatalog

from .embedding_cache_format import cache_keys
from .embedding_cache_reader import EmbeddingCache

__all__ = ["cache_completeness"]


def cache_completeness(cfg, dataset_names: Sequence[str]) -> Dict:
    """
    Count the images of ``dataset_names`` whose SAM embedding the cache of ``cfg`` can serve.

    Reads only the cache's shard indices (no embedding is loaded). An image counts as cached
    when an entry made with this config's encoder and preprocessing exists and its image file
    did not change since (what :class:`EmbeddingCache` would serve), or when an old-format
    ``<stem>.pt`` exists.

    Args:
        cfg: a WPS-SAM config (``INPUT.EMBEDDING_CACHE_DIR``, ``MODEL.SAM``).
        dataset_names: registered dataset names; an image listed twice counts once.

    Returns:
        dict with "enabled" (bool: INPUT.EMBEDDING_CACHE_DIR is set), "cache_dir" (str),
        "exists" (bool), and per dataset name and under "total" a dict {"images", "cached",
        "stale", "missing"} (images; served by the cache; cached but stale; not cached).
    """
    cache_dir = cfg.INPUT.EMBEDDING_CACHE_DIR
    result = {"enabled": bool(cache_dir), "cache_dir": cache_dir, "exists": False}
    if not cache_dir:
        return result
    result["exists"] = os.path.isdir(cache_dir)
    reader = EmbeddingCache(cache_dir, cache_keys(cfg))
    if result["exists"]:
        reader.load_index()
    entries = reader._entries or {}  # the index the cache itself reads (stem -> entries)
    total = {"images": 0, "cached": 0, "stale": 0, "missing": 0}
    seen = set()
    for name in dataset_names:
        counts = {"images": 0, "cached": 0, "stale": 0, "missing": 0}
        for d in DatasetCatalog.get(name):
            file_name = d["file_name"]
            stem = os.path.splitext(os.path.basename(file_name))[0]
            candidates = entries.get(stem, [])
            if any(reader.stale_reason(e, file_name) is None for e in candidates):
                state = "cached"
            elif candidates:
                state = "stale"
            elif os.path.exists(os.path.join(cache_dir, stem + ".pt")):
                state = "cached"  # the old per-image format, still read
            else:
                state = "missing"
            counts["images"] += 1
            counts[state] += 1
            if stem not in seen:
                seen.add(stem)
                total["images"] += 1
                total[state] += 1
        result[name] = counts
    result["total"] = total
    return result
