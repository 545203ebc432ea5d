"""Every shipped config merges into add_wps_sam_config and agrees with its datasets."""

import glob
import os

import pytest

import wps_sam  # noqa: F401  isort:skip
from detectron2.config import get_cfg

from wps_sam import add_wps_sam_config
from wps_sam.config import REMOVED_KEYS, RemovedConfigKeyError
from wps_sam.data.catalog_utils import resolve_num_classes

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(glob.glob(os.path.join(REPO, "configs", "**", "*.yaml"), recursive=True))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: os.path.relpath(p, REPO))
def test_config_merges(path):
    cfg = get_cfg()
    add_wps_sam_config(cfg)
    cfg.merge_from_file(path)
    # WPS-SAM, or the paper's baselines (docs/BASELINES.md): Det-SAM, a built-in segmentor.
    # SAM prompted with ground-truth parts, a built-in segmentor.
    assert cfg.MODEL.META_ARCHITECTURE in ("WPSSAM", "DetSAM", "SAMGTPrompted", "SemanticSegmentor")
    if cfg.DATASETS.TRAIN or cfg.DATASETS.TEST:
        resolve_num_classes(cfg)  # raises if NUM_CLASSES disagrees with the datasets' classes


def test_paper_recipe():
    cfg = get_cfg()
    add_wps_sam_config(cfg)
    cfg.merge_from_file(os.path.join(REPO, "configs", "wps_sam.yaml"))
    w = cfg.MODEL.WPS_SAM
    assert cfg.MODEL.SAM.VARIANT == "vit_b" and cfg.MODEL.SAM.IMAGE_SIZE == 1024
    assert (w.NUM_QUERIES, w.ENC_LAYERS, w.DEC_LAYERS, w.NUM_DOWNSAMPLE_CONVS) == (25, 6, 6, 2)
    assert (w.CLASS_COST, w.PROMPT_COST, w.CLASS_WEIGHT, w.PROMPT_WEIGHT) == (10, 1, 5, 20)
    assert cfg.SOLVER.OPTIMIZER == "ADAM" and cfg.SOLVER.BASE_LR == 1e-4
    assert cfg.SOLVER.IMS_PER_BATCH == 8 and cfg.SOLVER.NUM_EPOCHS == 150
    assert cfg.DATASETS.TRAIN == ("partimagenet_train",) and w.NUM_CLASSES == 40


def test_unknown_key_is_rejected(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("MODEL:\n  WPS_SAM:\n    NUM_QUERYS: 10\n")
    cfg = get_cfg()
    add_wps_sam_config(cfg)
    with pytest.raises(KeyError, match="NUM_QUERYS"):
        cfg.merge_from_file(str(bad))


@pytest.mark.parametrize("key", sorted(REMOVED_KEYS))
def test_removed_key_names_its_replacement(tmp_path, key):
    *sections, leaf = key.split(".")
    text = "".join(f"{'  ' * i}{name}:\n" for i, name in enumerate(sections))
    bad = tmp_path / "old.yaml"
    bad.write_text(text + f"{'  ' * len(sections)}{leaf}: 0\n")
    cfg = get_cfg()
    add_wps_sam_config(cfg)
    with pytest.raises(RemovedConfigKeyError, match=key.replace(".", r"\.")) as error:
        cfg.merge_from_file(str(bad))
    assert REMOVED_KEYS[key] in str(error.value)
    with pytest.raises(RemovedConfigKeyError, match="replaced by"):
        cfg.merge_from_list([key, "0"])


def test_config_only_adds_keys():
    """add_wps_sam_config leaves detectron2's own defaults as they are (the base YAMLs set them)."""
    plain, cfg = get_cfg(), get_cfg()
    add_wps_sam_config(cfg)

    def leaves(node, prefix=""):
        for k, v in node.items():
            if isinstance(v, dict):
                yield from leaves(v, prefix + k + ".")
            else:
                yield prefix + k, v

    added = dict(leaves(cfg))
    assert all(added[k] == v for k, v in leaves(plain))
    # Clones and merges keep the removed-key check.
    assert isinstance(cfg.clone(), type(cfg))
