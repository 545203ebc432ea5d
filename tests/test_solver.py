"""The LR schedules: the authors' warmup + cosine (clamped at MAX_ITER) and the epoch schedule."""

import pytest
import torch
from detectron2.config import get_cfg

from wps_sam import add_wps_sam_config
from wps_sam.solver import ClampedLRMultiplier, build_wps_sam_lr_scheduler


def cosine_cfg(max_iter=1000, warmup=250):
    cfg = get_cfg()
    add_wps_sam_config(cfg)
    cfg.SOLVER.BASE_LR = 1e-4
    cfg.SOLVER.MAX_ITER = max_iter
    cfg.SOLVER.LR_SCHEDULER_NAME = "WarmupCosineLR"
    cfg.SOLVER.WARMUP_ITERS = warmup
    cfg.SOLVER.WARMUP_FACTOR = 0.0
    cfg.SOLVER.WARMUP_METHOD = "linear"
    return cfg


def lrs(cfg, steps):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.SOLVER.BASE_LR)
    sched = build_wps_sam_lr_scheduler(cfg, opt)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return sched, out


def test_warmup_cosine_rises_over_warmup_then_never_rises_to_the_end_and_past_it():
    cfg = cosine_cfg()
    sched, lr = lrs(cfg, 1300)  # 300 steps past MAX_ITER
    assert isinstance(sched, ClampedLRMultiplier)
    assert lr[0] == 0.0
    assert lr[125] == pytest.approx(0.5 * lr[250], rel=0.02)  # linear warmup
    peak = max(lr)
    assert lr.index(peak) == 250 and peak < 1e-4 and peak > 0.8e-4
    after = lr[250:]
    assert all(b <= a + 1e-15 for a, b in zip(after, after[1:])), "LR rose after the warmup"
    assert lr[1000] == pytest.approx(0.0, abs=1e-12) and lr[-1] == pytest.approx(0.0, abs=1e-12)
    # The cosine's midpoint (detectron2's cosine spans the whole run).
    assert lr[500] == pytest.approx(0.5e-4, rel=1e-3)


def test_other_schedulers_are_detectron2s():
    cfg = cosine_cfg()
    cfg.SOLVER.LR_SCHEDULER_NAME = "WarmupMultiStepLR"
    cfg.SOLVER.STEPS = (500,)
    cfg.SOLVER.WARMUP_ITERS = 0
    _, lr = lrs(cfg, 600)
    assert lr[0] == pytest.approx(1e-4) and lr[599] == pytest.approx(1e-5)


def test_shipped_real_data_recipes_use_the_authors_schedule():
    from wps_sam.cli_config import load_wps_sam_cfg

    for path in (
        "configs/wps_sam.yaml",
        "configs/partimagenet/wps_sam_vit_b_box_q25_150ep.yaml",
        "configs/partimagenet/wps_sam_vit_b_point_q25_150ep.yaml",
        "configs/pascal_part/wps_sam_vit_b_box_q25_150ep.yaml",
    ):
        cfg = load_wps_sam_cfg(path, [], freeze=False)
        assert cfg.SOLVER.LR_SCHEDULER_NAME == "WarmupCosineLR", path
        assert cfg.SOLVER.WARMUP_ITERS == 250 and cfg.SOLVER.WARMUP_FACTOR == 0.0, path
        assert cfg.MODEL.WPS_SAM.PROMPT_LOSS_NORM == "matched", path
