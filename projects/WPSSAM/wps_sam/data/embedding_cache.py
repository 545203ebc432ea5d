"""A disk cache of SAM image embeddings, so that the frozen encoder runs once per image.

The prompter is the only trainable part of WPS-SAM, and the image encoder is by far its most
expensive frozen part (ViT-B: ~15 s per 1024² image on one CPU core). Training many epochs
therefore pays the encoder cost once: :func:`build_embedding_cache` encodes every image and
``WPSSAMDatasetMapper`` reads the embeddings back through ``INPUT.EMBEDDING_CACHE_DIR``.

Format (version 2, see docs/PERFORMANCE.md):

* ``cache_info.json``: the format version, the encoder fingerprint (SAM architecture keys and the
  sha256 of its checkpoint) and the preprocessing (image size, pixel mean/std, input format).
  Building into a folder made by another SAM is refused (or, with ``rebuild_stale``, the folder
  is emptied with a warning).
* ``shard-<rank>-<time>-<n>.npy``: ``N x D x E x E`` float16 embeddings (NumPy ``.npy``), read
  with ``np.load(mmap_mode="r")``: a training process maps the shards instead of loading them.
* ``shard-<...>.json``: the shard's index: its shape, byte size, encoder and preprocessing keys,
  and one entry per row: dataset name, image stem, file name, image size in bytes, and the time
  it was encoded. A shard is valid only once its index exists; both files are written to
  ``*.tmp`` and renamed (``os.replace``), data first, so a killed build never leaves a
  half-written shard that looks valid. A rerun keeps the valid shards and encodes the rest.

An entry is used only when its keys match the reading config and its image is unchanged (same
byte size, not modified after it was encoded); otherwise the mapper warns with the file name and
the encoder recomputes it. A shard whose file is shorter than its index says (a truncated copy)
raises an error naming it; :func:`build_embedding_cache` deletes such shards and re-encodes their
images. Embeddings are stored in float16 (2 MiB per ViT-B image instead of 4 MiB); the relative
rounding error is below 1e-3, see tests/test_embedding_cache.py for its effect on the losses.

The old format (one float32 ``<stem>.pt`` per image) is still read when no shard holds an image;
a build replaces it.
"""

import glob
import hashlib
import json
import logging
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional

import numpy as np
import torch
from detectron2.data import DatasetCatalog
from detectron2.utils import comm
from tqdm import tqdm

__all__ = [
    "CACHE_FORMAT",
    "EmbeddingCache",
    "build_embedding_cache",
    "cache_keys",
    "sam_fingerprint",
]

logger = logging.getLogger(__name__)
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


def sam_fingerprint(cfg) -> dict:
    """What identifies the embeddings of a SAM: its architecture keys and checkpoint digest.

    The encoder's autocast precision (MODEL.SAM.ENCODER_AUTOCAST) is left out: a cache built
    under bf16 serves an fp32 config and the other way round (the cache stores float16 anyway).
    """
    checkpoint = cfg.MODEL.SAM.CHECKPOINT
    digest = _file_sha256(checkpoint) if checkpoint else "random-weights"
    arch = {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in cfg.MODEL.SAM.items()}
    for key in ("CHECKPOINT", "ENCODER_AUTOCAST"):
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


def _info(cfg) -> dict:
    return {
        "format": CACHE_FORMAT,
        "dtype": "float16",
        **sam_fingerprint(cfg),
        "preprocessing": preprocessing(cfg),
        "keys": cache_keys(cfg),
    }


def _stem(file_name: str) -> str:
    return os.path.splitext(os.path.basename(file_name))[0]


def _legacy_files(cache_dir: str) -> List[str]:
    return glob.glob(os.path.join(glob.escape(cache_dir), "*.pt"))


def _shard_files(cache_dir: str) -> List[str]:
    """The data files of every shard (``shard-*.npy``), complete or not, sorted."""
    return sorted(glob.glob(os.path.join(glob.escape(cache_dir), "shard-*.npy")))


def _index_path(shard_path: str) -> str:
    return shard_path[: -len(".npy")] + ".json"


def check_shard(shard_path: str, index: dict) -> Optional[str]:
    """Why the data file of a shard does not match its index (None when it does)."""
    if not os.path.exists(shard_path):
        return f"its data file {shard_path} is missing"
    size = os.path.getsize(shard_path)
    if size != index["nbytes"]:
        return (
            f"{shard_path} has {size} bytes, its index {_index_path(shard_path)} says "
            f"{index['nbytes']} (truncated or overwritten)"
        )
    return None


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
        for shard in _shard_files(self.cache_dir):
            index_path = _index_path(shard)
            if not os.path.exists(index_path):
                continue  # a shard whose build was killed before its index: never valid
            with open(index_path) as f:
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
        candidates = self._entries.get(_stem(file_name), [])
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
        legacy = os.path.join(self.cache_dir, _stem(file_name) + ".pt")
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
            stale = _shard_files(cache_dir) + _legacy_files(cache_dir)
            logger.warning(
                f"The embedding cache {cache_dir} was made by another SAM (checkpoint sha256 "
                f"{existing.get('checkpoint_sha256')}, now {info['checkpoint_sha256']}): "
                f"deleting its {len(stale)} embedding files and rebuilding it."
            )
            for name in stale:
                _remove(name)
                if name.endswith(".npy"):
                    _remove(_index_path(name))
    for tmp in glob.glob(os.path.join(glob.escape(cache_dir), "*.tmp")):
        _remove(tmp)  # a build killed while writing
    for shard in _shard_files(cache_dir):
        index_path = _index_path(shard)
        if not os.path.exists(index_path):
            logger.warning(f"Embedding cache: {shard} has no index (a killed build): deleted.")
            _remove(shard)
            continue
        with open(index_path) as f:
            problem = check_shard(shard, json.load(f))
        if problem is not None:
            logger.warning(f"Embedding cache shard {problem}: deleted, its images are re-encoded.")
            _remove(index_path)
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
    index_path = _index_path(shard)
    with open(index_path + ".tmp", "w") as f:
        json.dump(index, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(index_path + ".tmp", index_path)  # from here on the shard is valid


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
    from .dataset_mappers.wps_sam_dataset_mapper import WPSSAMDatasetMapper

    cache_dir = cache_dir or cfg.INPUT.EMBEDDING_CACHE_DIR
    if not cache_dir:
        raise ValueError("No cache folder: set INPUT.EMBEDDING_CACHE_DIR")
    info = _info(cfg)
    if comm.is_main_process():
        _prepare_folder(cache_dir, info, rebuild_stale)
    comm.synchronize()
    reader = EmbeddingCache(cache_dir, info["keys"]).load_index()
    todo, counts, seen = [], {"written": 0, "present": 0, "stale": 0}, set()
    for name in dataset_names:
        for d in DatasetCatalog.get(name):
            stem = _stem(d["file_name"])
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
                        "image": _stem(d["file_name"]),
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
        legacy = _legacy_files(cache_dir)
        if legacy:
            logger.info(f"{cache_dir}: removing {len(legacy)} old-format .pt embeddings.")
            for path in legacy:
                _remove(path)
    logger.info(f"Embedding cache {cache_dir}: {counts}")
    return counts
