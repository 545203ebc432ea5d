"""The float16 sharded embedding cache: same losses as from images, invalid shards never used,
a killed build resumes, stale entries are re-encoded."""

import json
import logging
import os

import wps_sam  # noqa: F401  isort:skip
import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model

from wps_sam import add_wps_sam_config
from wps_sam.data import WPSSAMDatasetMapper
from wps_sam.data.datasets.register_partimagenet import register_all_partimagenet
from wps_sam.data.embedding_cache import EmbeddingCache, build_embedding_cache, cache_keys
from wps_sam.solver import build_wps_sam_optimizer

from partimagenet_fixture import make_partimagenet

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATASET = "pin_cache_fixture_val"
# Losses from float16 embeddings vs float32 ones (relative rounding <= 2**-11 per element), over
# three Adam steps of the tiny SAM: |a - b| <= LOSS_ATOL + LOSS_RTOL * |b|.
LOSS_RTOL, LOSS_ATOL = 2e-3, 1e-4


@pytest.fixture(scope="module")
def dicts(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("pin_cache"))
    make_partimagenet(root, "val")
    if DATASET not in DatasetCatalog.list():
        register_all_partimagenet(root, name_prefix="pin_cache_fixture")
    return DatasetCatalog.get(DATASET)


def _cfg(cache_dir):
    cfg = get_cfg()
    add_wps_sam_config(cfg)
    cfg.merge_from_file(os.path.join(REPO_ROOT, "configs", "tests", "tiny_random_sam.yaml"))
    cfg.INPUT.EMBEDDING_CACHE_DIR = str(cache_dir)
    return cfg


def _model(cfg, seed=0):
    torch.manual_seed(seed)
    return build_model(cfg)


def _shards(cache_dir):
    return sorted(os.path.join(cache_dir, n) for n in os.listdir(cache_dir) if n.endswith(".npy"))


def test_fp16_cache_gives_the_losses_of_images(dicts, tmp_path):
    cfg = _cfg(tmp_path / "cache")
    counts = build_embedding_cache(cfg, _model(cfg), [DATASET], batch_size=2)
    assert counts == {"written": len(dicts), "present": 0, "stale": 0}
    # float16 shards, memory-mapped, one index per shard.
    shards = _shards(str(tmp_path / "cache"))
    assert shards and all(os.path.exists(s[:-4] + ".json") for s in shards)
    array = np.load(shards[0], mmap_mode="r")
    assert isinstance(array, np.memmap) and array.dtype == np.float16
    assert array.shape[1:] == (256, 8, 8)

    annotated = [d for d in dicts if d.get("annotations")]
    from_cache = [WPSSAMDatasetMapper(cfg, is_train=True)(d) for d in annotated]
    cfg_images = _cfg("")
    from_images = [WPSSAMDatasetMapper(cfg_images, is_train=True)(d) for d in annotated]
    assert all("image_embedding" in x for x in from_cache)
    assert not any("image_embedding" in x for x in from_images)
    model = _model(cfg).eval()
    direct = model.image_embeddings(from_images)
    torch.testing.assert_close(
        torch.stack([x["image_embedding"] for x in from_cache]), direct, rtol=1e-3, atol=1e-3
    )

    history = {}
    for name, batch in (("cache", from_cache), ("images", from_images)):
        model = _model(cfg)
        model.train()
        optimizer = build_wps_sam_optimizer(cfg, model)
        history[name] = []
        for _ in range(3):
            losses = model(batch)
            history[name].append([losses[k].item() for k in sorted(losses)])
            optimizer.zero_grad()
            sum(losses.values()).backward()
            optimizer.step()
    a, b = np.array(history["cache"]), np.array(history["images"])
    assert a.shape == b.shape and np.all(np.abs(a - b) <= LOSS_ATOL + LOSS_RTOL * np.abs(b)), (
        a,
        b,
    )
    assert not np.array_equal(a[0], a[-1])  # the prompter did train


def test_truncated_shard_is_reported_then_rebuilt(dicts, tmp_path):
    cache = str(tmp_path / "cache")
    cfg = _cfg(cache)
    model = _model(cfg)
    build_embedding_cache(cfg, model, [DATASET], shard_size=1)
    shard = _shards(cache)[0]
    with open(shard, "r+b") as f:
        f.truncate(os.path.getsize(shard) - 100)  # a copy that stopped early
    reader = EmbeddingCache(cache, cache_keys(cfg), (256, 8, 8))
    with open(shard[:-4] + ".json") as f:
        file_name = json.load(f)["entries"][0]["file_name"]
    d = next(d for d in dicts if d["file_name"] == file_name)
    with pytest.raises(ValueError, match=os.path.basename(shard)):
        reader.get(d["file_name"])
    counts = build_embedding_cache(cfg, model, [DATASET], shard_size=1)
    assert counts == {"written": 1, "present": len(dicts) - 1, "stale": 0}
    assert not os.path.exists(shard)
    assert EmbeddingCache(cache, cache_keys(cfg)).get(d["file_name"]) is not None


def test_killed_build_resumes(dicts, tmp_path):
    cache = str(tmp_path / "cache")
    cfg = _cfg(cache)
    model = _model(cfg)
    encode = model.image_embeddings
    calls = []

    def dies_on_second_batch(inputs):
        calls.append(len(inputs))
        if len(calls) == 2:
            raise KeyboardInterrupt("simulated kill")
        return encode(inputs)

    model.image_embeddings = dies_on_second_batch
    with pytest.raises(KeyboardInterrupt):
        build_embedding_cache(cfg, model, [DATASET], batch_size=1, shard_size=1)
    # What a kill at other moments leaves: a half-written file, a shard without its index.
    complete = _shards(cache)
    assert len(complete) == 1
    with open(os.path.join(cache, "shard-000-x-half.npy.tmp"), "wb") as f:
        f.write(b"\x93NUMPY partial")
    np.save(os.path.join(cache, "shard-000-x-noindex.npy"), np.zeros((1, 256, 8, 8), np.float16))
    reader = EmbeddingCache(cache, cache_keys(cfg)).load_index()
    assert len(reader) == 1  # the shard without an index is not valid

    model.image_embeddings = encode
    counts = build_embedding_cache(cfg, model, [DATASET], batch_size=1, shard_size=1)
    assert counts == {"written": len(dicts) - 1, "present": 1, "stale": 0}
    names = sorted(os.listdir(cache))
    assert not any(n.endswith(".tmp") or "noindex" in n for n in names)
    reader = EmbeddingCache(cache, cache_keys(cfg), (256, 8, 8))
    assert all(reader.get(d["file_name"]) is not None for d in dicts)


def test_stale_and_foreign_entries_are_not_used(dicts, tmp_path, caplog):
    cache = str(tmp_path / "cache")
    cfg = _cfg(cache)
    model = _model(cfg)
    build_embedding_cache(cfg, model, [DATASET])
    d = dicts[0]
    # Another preprocessing (pixel mean): every entry is stale for that config; warned by name.
    other = _cfg(cache)
    other.MODEL.PIXEL_MEAN = [0.0, 0.0, 0.0]
    with caplog.at_level(logging.WARNING):
        assert WPSSAMDatasetMapper(other, is_train=False)(d).get("image_embedding") is None
    assert os.path.basename(d["file_name"]) in caplog.text and "preprocessing" in caplog.text
    with pytest.raises(ValueError, match="another SAM or preprocessing"):
        build_embedding_cache(other, model, [DATASET])
    # The image file is rewritten after it was encoded: stale, re-encoded by the next build.
    with open(d["file_name"], "rb") as f:
        data = f.read()
    with open(d["file_name"], "wb") as f:
        f.write(data)
    assert WPSSAMDatasetMapper(cfg, is_train=False)(d).get("image_embedding") is None
    counts = build_embedding_cache(cfg, model, [DATASET])
    assert counts == {"written": 1, "present": len(dicts) - 1, "stale": 1}
    assert "image_embedding" in WPSSAMDatasetMapper(cfg, is_train=False)(d)


def test_old_pt_cache_is_read_then_replaced_by_shards(dicts, tmp_path):
    cache = str(tmp_path / "cache")
    cfg = _cfg(cache)
    model = _model(cfg)
    os.makedirs(cache)
    from wps_sam.data.embedding_cache import sam_fingerprint

    with open(os.path.join(cache, "cache_info.json"), "w") as f:
        json.dump(sam_fingerprint(cfg), f)  # what the old format wrote
    d = dicts[0]
    old = torch.randn(256, 8, 8)
    stem = os.path.splitext(os.path.basename(d["file_name"]))[0]
    torch.save(old, os.path.join(cache, stem + ".pt"))
    assert torch.equal(WPSSAMDatasetMapper(cfg, is_train=False)(d)["image_embedding"], old)
    counts = build_embedding_cache(cfg, model, [DATASET])
    assert counts == {"written": len(dicts), "present": 0, "stale": 0}
    assert not any(n.endswith(".pt") for n in os.listdir(cache)) and _shards(cache)
    new = WPSSAMDatasetMapper(cfg, is_train=False)(d)["image_embedding"]
    assert new.shape == old.shape and not torch.equal(new, old)


def test_decoder_and_checkpoint_keys_do_not_invalidate_the_cache():
    """Only what changes the encoder's output keys the cache: the mask threshold, the upsampling
    mode and whether frozen weights are saved do not (nor the encoder's autocast)."""
    cfg = get_cfg()
    add_wps_sam_config(cfg)
    before = cache_keys(cfg)
    cfg.MODEL.SAM.MASK_THRESHOLD = 0.5
    cfg.MODEL.SAM.MASK_UPSAMPLE = "twice"
    cfg.MODEL.SAM.SAVE_FROZEN_WEIGHTS = True
    assert cache_keys(cfg) == before
    cfg.MODEL.SAM.ENCODER_DEPTH = cfg.MODEL.SAM.ENCODER_DEPTH + 1
    assert cache_keys(cfg)["encoder"] != before["encoder"]
