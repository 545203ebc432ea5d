"""Exact resume: the data order (sampler + aspect-ratio grouping + workers), RNG states, and a real
SIGKILL of tools/train_net.py followed by ``--resume`` that ends where an uninterrupted run ends."""

import itertools
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import wps_sam  # noqa: F401  isort:skip
from detectron2.data import build_detection_train_loader  # noqa: E402

from wps_sam.data.resumable_sampler import (  # noqa: E402
    ResumableTrainingSampler,
    consumed_state,
)
from wps_sam.data.resumable_train_loader import ResumableTrainLoader  # noqa: E402
from wps_sam.engine.training_state_hook import get_rng_states, set_rng_states  # noqa: E402
from wps_sam.synthetic.parts import generate_synthetic_parts  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _identity(d):
    return {"index": d["index"], "width": d["width"], "height": d["height"]}


def _loader(dicts, batch_size, grouping, workers, seed=3):
    sampler = ResumableTrainingSampler(len(dicts), seed=seed)
    loader = build_detection_train_loader(
        dicts,
        mapper=_identity,
        sampler=sampler,
        total_batch_size=batch_size,
        aspect_ratio_grouping=grouping,
        num_workers=workers,
    )
    return ResumableTrainLoader(loader, sampler, dicts, batch_size, grouping, workers)


def _batches(loader, n):
    return [[d["index"] for d in batch] for batch in itertools.islice(iter(loader), n)]


def test_sampler_matches_detectron2_training_sampler():
    from detectron2.data.samplers import TrainingSampler

    ours = ResumableTrainingSampler(7, seed=11)
    theirs = TrainingSampler(7, seed=11)
    assert list(itertools.islice(iter(ours), 30)) == list(itertools.islice(iter(theirs), 30))
    ours.resume(9, pending=[5, 6])
    assert list(itertools.islice(iter(ours), 6)) == [5, 6] + list(
        itertools.islice(iter(theirs), 9, 13)
    )


def test_consumed_state_replays_aspect_ratio_buckets():
    stream = iter([0, 1, 2, 3, 4, 5, 6, 7])  # buckets: even -> 0, odd -> 1
    skip, pending = consumed_state(stream, 2, 2, bucket_of=lambda i: i % 2)
    # batches [0, 2] and [1, 3] are emitted after index 3; nothing is held back then.
    assert (skip, pending) == (4, [])
    skip, pending = consumed_state(iter([0, 2, 1, 4, 3, 6]), 2, 2, bucket_of=lambda i: i % 2)
    # [0, 2] after index 2, then 1 waits, [4, ...] waits, 3 completes [1, 3] at position 5.
    assert (skip, pending) == (5, [4])
    assert consumed_state(iter(range(100)), 3, 4) == (12, [])


@pytest.mark.parametrize("grouping,workers", [(True, 0), (True, 2), (False, 0), (False, 1)])
def test_loader_resumes_the_batch_sequence(grouping, workers):
    """Mixed aspect ratios (2 buckets) and several workers: the batches after resuming at
    iteration k are the batches k, k+1, ... of an uninterrupted loader, across epoch ends."""
    dicts = [
        {"index": i, "width": 30 if i % 3 else 10, "height": 20, "file_name": f"{i}.jpg"}
        for i in range(11)
    ]
    full = _batches(_loader(dicts, 3, grouping, workers), 14)
    for k in (1, 5, 9):  # 5 and 9 are not multiples of anything in particular
        resumed = _loader(dicts, 3, grouping, workers)
        where = resumed.resume(k)
        assert where["skip"] >= 3 * k
        assert _batches(resumed, 14 - k) == full[k:], (k, where)


def test_rng_states_roundtrip_through_a_weights_only_checkpoint(tmp_path):
    import random

    import numpy as np

    states = get_rng_states()
    expected = (random.random(), np.random.rand(), torch.rand(3))
    path = tmp_path / "rng.pth"
    torch.save({"rng": states}, path)
    random.random(), np.random.rand(3), torch.rand(5)  # move every stream on
    set_rng_states(torch.load(path, weights_only=True)["rng"])
    got = (random.random(), np.random.rand(), torch.rand(3))
    assert got[0] == expected[0] and got[1] == expected[1]
    assert torch.equal(got[2], expected[2])


# --- the real thing: SIGKILL during tools/train_net.py, then --resume -------------------------

MAX_ITER = 60
PERIOD = 20
OPTS = [
    "DATASETS.TRAIN",
    '("synthetic_parts_train",)',
    "DATASETS.TEST",
    "()",
    "MODEL.WPS_SAM.NUM_CLASSES",
    "20",
    "SOLVER.MAX_ITER",
    str(MAX_ITER),
    "SOLVER.CHECKPOINT_PERIOD",
    str(PERIOD),
    "SOLVER.WARMUP_ITERS",
    "5",
    "DATALOADER.NUM_WORKERS",
    "1",
    "SEED",
    "5",
]


def _train_cmd(out_dir, resume=False):
    cmd = [
        sys.executable,
        "tools/train_net.py",
        "--config-file",
        "configs/tests/tiny_random_sam.yaml",
    ]
    return cmd + (["--resume"] if resume else []) + OPTS + ["OUTPUT_DIR", str(out_dir)]


def _metrics(out_dir):
    """iteration -> the last metrics.json record of it (a resumed run appends)."""
    records = {}
    with open(os.path.join(out_dir, "metrics.json")) as f:
        for line in f:
            r = json.loads(line)
            records[r["iteration"]] = r
    return records


@pytest.mark.slow
def test_sigkill_then_resume_equals_uninterrupted_run(tmp_path):
    """About 40 s on one core: a run killed (SIGKILL) after its first checkpoint and resumed
    with --resume ends with the uninterrupted run's losses, learning rates and weights."""
    generate_synthetic_parts(
        str(tmp_path / "datasets" / "synthetic_parts"),
        "train",
        num_images=13,  # odd: epochs end mid-batch
        image_size=96,
        seed=1,
        num_workers=0,
        show_progress=False,
    )
    env = {**os.environ, "DETECTRON2_DATASETS": str(tmp_path / "datasets")}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("PYTHONPATH", None)
    killed, full = tmp_path / "killed", tmp_path / "full"

    proc = subprocess.Popen(
        _train_cmd(killed),
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    tag = killed / "last_checkpoint"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if tag.exists() and tag.read_text().strip() == f"model_{PERIOD - 1:07d}.pth":
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    assert proc.wait(timeout=60) == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (killed / "model_final.pth").exists()

    resumed = subprocess.run(
        _train_cmd(killed, resume=True), cwd=REPO, env=env, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    log = resumed.stdout + resumed.stderr
    assert f"Starting training from iteration {PERIOD}" in log
    assert f"Resuming the data order at iteration {PERIOD}" in log
    assert "Start-up summary" in log and "trainable" in log and "embedding cache: off" in log

    uninterrupted = subprocess.run(_train_cmd(full), cwd=REPO, env=env, capture_output=True)
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-3000:]

    # Losses are logged as medians over the last 20 iterations: compare the records whose
    # window lies after the resume point (iterations 39 and 59).
    m_resumed, m_full = _metrics(killed), _metrics(full)
    compared = [it for it in m_full if it >= 2 * PERIOD - 1]
    assert len(compared) >= 2
    for it in compared:
        for key, value in m_full[it].items():
            if "loss" in key or key == "lr":
                assert m_resumed[it][key] == value, (it, key, m_resumed[it][key], value)

    # The end state is bit-identical: prompter weights and optimizer moments.
    a = torch.load(killed / "model_final.pth", weights_only=True)
    b = torch.load(full / "model_final.pth", weights_only=True)
    assert a["iteration"] == b["iteration"] == MAX_ITER - 1
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    # detectron2 v0.6 saves no optimizer state; ExactResumeMixin adds it under "_trainer".
    opt_a, opt_b = a["trainer"]["_trainer"]["optimizer"], b["trainer"]["_trainer"]["optimizer"]
    assert len(opt_a["state"]) == len(opt_b["state"]) > 0
    for sa, sb in zip(opt_a["state"].values(), opt_b["state"].values()):
        assert torch.equal(sa["exp_avg"], sb["exp_avg"])
        assert torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])
