"""A disk cache of SAM image embeddings, so that the frozen encoder runs once per image.

The prompter is the only trainable part of WPS-SAM, and the image encoder is by far its most
expensive frozen part (ViT-B: ~9 s per 1024² image on a CPU core pair, see README). Training
many epochs therefore pays the encoder cost once: :func:`build_embedding_cache` writes one
``<stem>.pt`` (a float32 (256, E, E) tensor) per image, where ``WPSSAMDatasetMapper`` finds it
through ``INPUT.EMBEDDING_CACHE_DIR``, and the model then skips its encoder for that image with
identical results (embeddings are stored in full precision).

A cache belongs to one SAM: ``cache_info.json`` records the SAM architecture and a fingerprint of
its checkpoint, and building into a folder made by another SAM is refused.
"""

import hashlib
import json
import logging
import os

import torch
from detectron2.data import DatasetCatalog
from tqdm import tqdm

from .dataset_mappers.wps_sam_dataset_mapper import WPSSAMDatasetMapper, embedding_cache_path

__all__ = ["build_embedding_cache", "sam_fingerprint"]

logger = logging.getLogger(__name__)
INFO_FILE = "cache_info.json"


def sam_fingerprint(cfg) -> dict:
    """What identifies the embeddings of a SAM: its architecture keys and checkpoint digest."""
    checkpoint = cfg.MODEL.SAM.CHECKPOINT
    digest = "random-weights"
    if checkpoint:
        h = hashlib.sha256()
        with open(checkpoint, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        digest = h.hexdigest()
    arch = {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in cfg.MODEL.SAM.items()}
    arch.pop("CHECKPOINT", None)
    arch.pop("ENCODER_BF16_ON_CPU", None)
    return {"sam": arch, "checkpoint_sha256": digest}


def _check_or_write_info(cache_dir: str, info: dict, rebuild_stale: bool = False):
    path = os.path.join(cache_dir, INFO_FILE)
    if os.path.exists(path):
        with open(path) as f:
            existing = json.load(f)
        if existing == info:
            return
        if not rebuild_stale:
            raise ValueError(
                f"The embedding cache {cache_dir} was made by another SAM ({existing}); this "
                f"config's SAM is {info}. Delete the folder or choose another "
                "INPUT.EMBEDDING_CACHE_DIR."
            )
        stale = [n for n in os.listdir(cache_dir) if n.endswith(".pt")]
        logger.warning(
            f"The embedding cache {cache_dir} was made by another SAM (checkpoint sha256 "
            f"{existing.get('checkpoint_sha256')}, now {info['checkpoint_sha256']}): "
            f"deleting its {len(stale)} embeddings and rebuilding it."
        )
        for name in stale:
            os.remove(os.path.join(cache_dir, name))
    os.makedirs(cache_dir, exist_ok=True)
    with open(path, "w") as f:
        json.dump(info, f, indent=1, sort_keys=True)


@torch.no_grad()
def build_embedding_cache(
    cfg, model, dataset_names, cache_dir=None, batch_size=8, rebuild_stale=False
) -> dict:
    """Write the SAM image embedding of every image of ``dataset_names`` into ``cache_dir``.

    Args:
        cfg: the config the model was built from (its INPUT.EMBEDDING_CACHE_DIR is the default
            ``cache_dir``).
        model: a :class:`wps_sam.WPSSAM` (only its frozen encoder is used).
        dataset_names: registered dataset names.
        batch_size: images per encoder call.
        rebuild_stale: when the cache was made by another SAM (architecture or checkpoint),
            delete its embeddings (with a warning) and rebuild it, instead of raising.
    Returns:
        counts {"written", "present", "stale"}: images encoded now, images already cached, and
        cached images re-encoded because the image file is newer than its embedding.
    """
    cache_dir = cache_dir or cfg.INPUT.EMBEDDING_CACHE_DIR
    if not cache_dir:
        raise ValueError("No cache folder: set INPUT.EMBEDDING_CACHE_DIR")
    _check_or_write_info(cache_dir, sam_fingerprint(cfg), rebuild_stale)
    # Train mode: no label maps are read; the annotations are stripped below.
    mapper = WPSSAMDatasetMapper(cfg, is_train=True)
    mapper.embedding_cache_dir = ""  # read images, never the cache being written
    todo = []
    counts = {"written": 0, "present": 0, "stale": 0}
    for name in dataset_names:
        for d in DatasetCatalog.get(name):
            path = embedding_cache_path(cache_dir, d["file_name"])
            if not os.path.exists(path):
                todo.append((d, path))
            elif os.path.getmtime(path) < os.path.getmtime(d["file_name"]):
                # The image was rewritten after it was encoded (a regenerated dataset).
                counts["stale"] += 1
                todo.append((d, path))
            else:
                counts["present"] += 1
    if counts["stale"]:
        logger.warning(
            f"Embedding cache {cache_dir}: {counts['stale']} images are newer than their cached "
            "embeddings; re-encoding them."
        )
    was_training = model.training
    model.eval()
    for start in tqdm(
        range(0, len(todo), batch_size), desc=f"SAM embeddings -> {cache_dir}", unit="batch"
    ):
        chunk = todo[start : start + batch_size]
        inputs = [
            {"image": mapper({k: v for k, v in d.items() if k != "annotations"})["image"]}
            for d, _ in chunk
        ]
        for (_, path), embedding in zip(chunk, model.image_embeddings(inputs)):
            tmp = path + ".tmp"
            torch.save(embedding.cpu().clone(), tmp)
            os.replace(tmp, path)  # never leave a truncated file under the final name
            counts["written"] += 1
    model.train(was_training)
    logger.info(f"Embedding cache {cache_dir}: {counts}")
    return counts
