"""Multi-process work without a GPU under wps_sam.distributed.launch (gloo): the embedding cache
built in shares, then train_net's Trainer (wps_sam.engine.Trainer) from it. Two processes with
batch 4 each follow the losses of one process with batch 8 on the same data order (DDP averages
the gradients; every WPS-SAM loss of this config is a mean over images)."""

import json
import os

import wps_sam  # noqa: F401  isort:skip
import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import default_argument_parser
from detectron2.structures import BoxMode
from PIL import Image

from wps_sam import add_wps_sam_config
from wps_sam.distributed import launch
from wps_sam.modeling.sam_builder import build_sam, sam_architecture_from_cfg

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATASET = "ddp_cpu_fixture_train"
ITERS = 3


def _make_dataset(root, n=8):
    """n random 96 x 128 images with 1-3 part boxes each; the dataset dicts go to dicts.json."""
    rng = np.random.default_rng(0)
    dicts = []
    for i in range(n):
        path = os.path.join(root, f"img_{i}.png")
        Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(path)
        annos = []
        for _ in range(int(rng.integers(1, 4))):
            x, y = rng.uniform(0, 80), rng.uniform(0, 50)
            w, h = rng.uniform(10, 40), rng.uniform(10, 40)
            annos.append(
                {
                    "bbox": [x, y, w, h],
                    "bbox_mode": int(BoxMode.XYWH_ABS),
                    "category_id": int(rng.integers(0, 40)),
                    "iscrowd": 0,
                }
            )
        dicts.append(
            {"file_name": path, "height": 96, "width": 128, "image_id": i, "annotations": annos}
        )
    with open(os.path.join(root, "dicts.json"), "w") as f:
        json.dump(dicts, f)


def _register(root):
    if DATASET in DatasetCatalog.list():
        DatasetCatalog.remove(DATASET)
        MetadataCatalog.remove(DATASET)

    def load():
        with open(os.path.join(root, "dicts.json")) as f:
            return json.load(f)

    DatasetCatalog.register(DATASET, load)
    MetadataCatalog.get(DATASET).set(thing_classes=[f"part {i}" for i in range(40)])


def _train(root, output_dir, result_file):
    """Runs in every process: the embedding cache (each rank encodes its share of the images into
    its own shards), then wps_sam.engine.Trainer for ITERS iterations from that cache; rank 0 saves
    the cache counts and the losses.

    Every rank loads the same SAM checkpoint: DDP broadcasts rank 0's state_dict at start, and
    WPS-SAM's state_dict leaves SAM's frozen weights out (they come from MODEL.SAM.CHECKPOINT).
    """
    from detectron2.modeling import build_model
    from detectron2.utils import comm

    from wps_sam.data.embedding_cache import build_embedding_cache
    from wps_sam.engine import Trainer, setup

    _register(root)
    opts = [
        "DATASETS.TRAIN",
        f"('{DATASET}',)",
        "DATASETS.TEST",
        "()",
        "SOLVER.IMS_PER_BATCH",
        "8",
        "SOLVER.MAX_ITER",
        str(ITERS),
        "SOLVER.BASE_LR",
        "0.001",
        "SOLVER.WARMUP_ITERS",
        "0",
        "DATALOADER.ASPECT_RATIO_GROUPING",
        "False",
        "SEED",
        "5",
        "MODEL.SAM.CHECKPOINT",
        os.path.join(root, "tiny_sam.pth"),
        "OUTPUT_DIR",
        output_dir,
        "INPUT.EMBEDDING_CACHE_DIR",
        os.path.join(output_dir, "cache"),
    ]
    config = os.path.join(REPO_ROOT, "configs", "tests", "tiny_random_sam.yaml")
    args = default_argument_parser().parse_args(["--config-file", config, *opts])
    cfg = setup(args)
    counts = build_embedding_cache(cfg, build_model(cfg), [DATASET])
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    if comm.is_main_process():
        keys = sorted(k for k in trainer.storage.histories() if k.startswith("loss_"))
        losses = {k: [v for v, _ in trainer.storage.history(k).values()] for k in keys}
        losses["world_size"] = comm.get_world_size()
        losses["cache_counts"] = counts
        with open(result_file, "w") as f:
            json.dump(losses, f)


@pytest.mark.slow
def test_two_cpu_processes_batch_4_match_one_process_batch_8(tmp_path):
    _make_dataset(str(tmp_path))
    cfg = get_cfg()
    add_wps_sam_config(cfg)
    cfg.merge_from_file(os.path.join(REPO_ROOT, "configs", "tests", "tiny_random_sam.yaml"))
    torch.manual_seed(0)
    torch.save(build_sam(sam_architecture_from_cfg(cfg)).state_dict(), tmp_path / "tiny_sam.pth")
    results = {}
    for n in (2, 1):
        result_file = str(tmp_path / f"losses_{n}.json")
        launch(
            _train,
            n,
            dist_url="auto",
            device="cpu",
            args=(str(tmp_path), str(tmp_path / f"out_{n}"), result_file),
        )
        with open(result_file) as f:
            results[n] = json.load(f)
    assert results[2].pop("world_size") == 2 and results[1].pop("world_size") == 1
    for n in (1, 2):
        assert results[n].pop("cache_counts") == {"written": 8, "present": 0, "stale": 0}
    shards = os.listdir(tmp_path / "out_2" / "cache")
    assert sorted(x.split("-")[1] for x in shards if x.endswith(".npy")) == ["000", "001"]
    assert sorted(results[2]) == sorted(results[1]) and "loss_cls" in results[1]
    for key in results[1]:
        two, one = np.array(results[2][key]), np.array(results[1][key])
        assert len(one) == ITERS, key
        np.testing.assert_allclose(two, one, rtol=1e-4, atol=1e-6, err_msg=key)
    assert results[1]["loss_prompt"][0] != results[1]["loss_prompt"][-1]  # it did train
