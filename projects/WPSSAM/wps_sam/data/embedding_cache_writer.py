"""The writer of the embedding cache: :func:`build_embedding_cache` runs SAM's frozen encoder over
datasets and writes float16 shards atomically (see :mod:`wps_sam.data.embedding_cache` for the
format). It reads images through :class:`WPSSAMDatasetMapper`, which itself depends only on the
reader and the key scheme, so the dependencies go one way: format <- reader <- mapper <- writer."""

import glob
import json
import logging
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import List

import numpy as np
import torch
from detectron2.data import DatasetCatalog
from detectron2.utils import comm
from tqdm import tqdm

from .dataset_mappers.wps_sam_dataset_mapper import WPSSAMDatasetMapper
from .embedding_cache_format import (
    CACHE_FORMAT,
    INFO_FILE,
    cache_info,
    check_shard,
    image_stem,
    index_path,
    legacy_files,
    shard_files,
)
from .embedding_cache_reader import EmbeddingCache

__all__ = ["build_embedding_cache"]

logger = logging.getLogger(__name__)


def _remove(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def _prepare_folder(cache_dir: str, info: dict, rebuild_stale: bool):
    """Main process: check cache_info.json, delete leftovers of killed builds and bad shards."""
    os.makedirs(cache_dir, exist_ok=True)
    path = os.path.join(cache_dir, INFO_FILE)
    existing = None
    if os.path.exists(path):
        with open(path) as f:
            existing = json.load(f)
        legacy_same_sam = existing.get("format") is None and all(
            existing.get(k) == info[k] for k in ("sam", "checkpoint_sha256")
        )
        if existing != info and not legacy_same_sam:
            if not rebuild_stale:
                raise ValueError(
                    f"The embedding cache {cache_dir} was made by another SAM or preprocessing "
                    f"({existing}); this config's is {info}. Delete the folder or choose another "
                    "INPUT.EMBEDDING_CACHE_DIR."
                )
            stale = shard_files(cache_dir) + legacy_files(cache_dir)
            logger.warning(
                f"The embedding cache {cache_dir} was made by another SAM (checkpoint sha256 "
                f"{existing.get('checkpoint_sha256')}, now {info['checkpoint_sha256']}): "
                f"deleting its {len(stale)} embedding files and rebuilding it."
            )
            for name in stale:
                _remove(name)
                if name.endswith(".npy"):
                    _remove(index_path(name))
    for tmp in glob.glob(os.path.join(glob.escape(cache_dir), "*.tmp")):
        _remove(tmp)  # a build killed while writing
    for shard in shard_files(cache_dir):
        index_file = index_path(shard)
        if not os.path.exists(index_file):
            logger.warning(f"Embedding cache: {shard} has no index (a killed build): deleted.")
            _remove(shard)
            continue
        with open(index_file) as f:
            problem = check_shard(shard, json.load(f))
        if problem is not None:
            logger.warning(f"Embedding cache shard {problem}: deleted, its images are re-encoded.")
            _remove(index_file)
            _remove(shard)
    if existing != info:
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(info, f, indent=1, sort_keys=True)
        os.replace(tmp, path)


class _ImagesToEncode(torch.utils.data.Dataset):
    """(dataset name, dataset dict, mapped uint8 image) of each image still to encode."""

    def __init__(self, items, mapper):
        self.items, self.mapper = items, mapper

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        name, d = self.items[i]
        image = self.mapper({k: v for k, v in d.items() if k != "annotations"})["image"]
        return name, d, image


def _write_shard(
    cache_dir: str, embeddings: List[np.ndarray], entries: List[dict], keys: dict, rank: int
):
    """Write one shard atomically: data (tmp + rename), then its index (tmp + rename)."""
    name = f"shard-{rank:03d}-{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:8]}"
    shard = os.path.join(cache_dir, name + ".npy")
    data = np.stack(embeddings).astype(np.float16)
    with open(shard + ".tmp", "wb") as f:
        np.save(f, data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(shard + ".tmp", shard)
    index = {
        "format": CACHE_FORMAT,
        "dtype": "float16",
        "shape": list(data.shape),
        "nbytes": os.path.getsize(shard),
        **keys,
        "entries": entries,
    }
    index_file = index_path(shard)
    with open(index_file + ".tmp", "w") as f:
        json.dump(index, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(index_file + ".tmp", index_file)  # from here on the shard is valid


@torch.no_grad()
def build_embedding_cache(
    cfg,
    model,
    dataset_names,
    cache_dir=None,
    batch_size=8,
    rebuild_stale=False,
    shard_size=128,
    num_workers=None,
) -> dict:
    """Encode every image of ``dataset_names`` not yet cached into ``cache_dir`` (float16 shards).

    Under detectron2's launch (several processes), every rank encodes its share (every
    world_size-th image still to do) into its own shards; call it on every rank.

    Args:
        cfg: the config the model was built from (its INPUT.EMBEDDING_CACHE_DIR is the default
            ``cache_dir``).
        model: a :class:`wps_sam.WPSSAM` (only its frozen encoder is used).
        dataset_names: registered dataset names.
        batch_size: images per encoder call.
        rebuild_stale: when the cache was made by another SAM (architecture or checkpoint) or
            preprocessing, delete its embeddings (with a warning) and rebuild it, instead of
            raising.
        shard_size: images per shard file (the most work a kill can lose).
        num_workers: image-loading processes (default: cfg.DATALOADER.NUM_WORKERS, at most the
            usable CPU cores minus one).
    Returns:
        counts over all ranks {"written", "present", "stale"}: images encoded now, images
        already cached, and cached images re-encoded because their image file changed.
    """
    cache_dir = cache_dir or cfg.INPUT.EMBEDDING_CACHE_DIR
    if not cache_dir:
        raise ValueError("No cache folder: set INPUT.EMBEDDING_CACHE_DIR")
    info = cache_info(cfg)
    if comm.is_main_process():
        _prepare_folder(cache_dir, info, rebuild_stale)
    comm.synchronize()
    reader = EmbeddingCache(cache_dir, info["keys"]).load_index()
    todo, counts, seen = [], {"written": 0, "present": 0, "stale": 0}, set()
    for name in dataset_names:
        for d in DatasetCatalog.get(name):
            stem = image_stem(d["file_name"])
            if stem in seen:
                continue  # an image listed by two datasets is encoded once
            seen.add(stem)
            candidates = reader._entries.get(stem, [])
            if any(reader.stale_reason(e, d["file_name"]) is None for e in candidates):
                counts["present"] += 1
                continue
            counts["stale"] += bool(candidates)
            todo.append((name, d))
    if counts["stale"]:
        logger.warning(
            f"Embedding cache {cache_dir}: {counts['stale']} images changed after they were "
            "encoded; re-encoding them."
        )
    rank, world = comm.get_rank(), comm.get_world_size()
    mine = todo[rank::world]
    # Train mode: no label maps are read; the annotations are stripped.
    mapper = WPSSAMDatasetMapper(cfg, is_train=True)
    mapper.embedding_cache_dir = ""  # read images, never the cache being written
    # Images are decoded and resized by loader workers while the encoder runs, and shards are
    # written by a background thread, so the build costs about what the encoder does.
    if num_workers is None:
        # Workers help only beside the encoder's own core(s): none when pinned to one core.
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2
        num_workers = min(cfg.DATALOADER.NUM_WORKERS, cores - 1)
    loader = torch.utils.data.DataLoader(
        _ImagesToEncode(mine, mapper),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=list,
    )
    was_training = model.training
    model.eval()
    buffer, entries, written = [], [], 0
    bar = tqdm(
        total=len(mine),
        desc=f"SAM embeddings -> {cache_dir}" + (f" (rank {rank})" if world > 1 else ""),
        unit="img",
        disable=not comm.is_main_process(),
    )
    with ThreadPoolExecutor(max_workers=1) as writer:
        pending = []
        for chunk in loader:
            encoded_at = time.time()
            embeddings = model.image_embeddings([{"image": image} for _, _, image in chunk])
            for (name, d, _), embedding in zip(chunk, embeddings.to("cpu", torch.float16)):
                buffer.append(embedding.numpy())
                entries.append(
                    {
                        "dataset": name,
                        "image": image_stem(d["file_name"]),
                        "file_name": d["file_name"],
                        "image_bytes": os.path.getsize(d["file_name"]),
                        "encoded_at": encoded_at,
                    }
                )
                if len(buffer) == shard_size:
                    pending.append(
                        writer.submit(_write_shard, cache_dir, buffer, entries, info["keys"], rank)
                    )
                    written += len(buffer)
                    buffer, entries = [], []
            bar.update(len(chunk))
        if buffer:
            pending.append(
                writer.submit(_write_shard, cache_dir, buffer, entries, info["keys"], rank)
            )
            written += len(buffer)
        for job in pending:
            job.result()  # raises a failed write here
    bar.close()
    model.train(was_training)
    counts["written"] = sum(comm.all_gather(written))
    comm.synchronize()
    if comm.is_main_process():
        legacy = legacy_files(cache_dir)
        if legacy:
            logger.info(f"{cache_dir}: removing {len(legacy)} old-format .pt embeddings.")
            for path in legacy:
                _remove(path)
    logger.info(f"Embedding cache {cache_dir}: {counts}")
    return counts
