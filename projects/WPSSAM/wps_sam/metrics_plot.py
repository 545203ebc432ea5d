"""Training curves from detectron2's ``metrics.json``: losses, learning rate, evaluation mIoU."""

import json
import os
from typing import Dict, List, Optional

__all__ = ["load_metrics", "plot_metrics"]


def load_metrics(path: str) -> Dict[int, dict]:
    """
    Read detectron2's ``metrics.json`` (one JSON record per line, written by ``JSONWriter``).

    Args:
        path: the file, or the OUTPUT_DIR holding it.

    Returns:
        {iteration: record}, iterations ascending. Records of the same iteration are merged
        (evaluation results may come on a line of their own) and later lines win, so a run
        resumed with ``--resume`` (which appends) gives the values of the run that finished.
        Lines that are not JSON objects with an "iteration" (a run killed while writing) are
        skipped.
    """
    if os.path.isdir(path):
        path = os.path.join(path, "metrics.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path} not found: pass an OUTPUT_DIR of tools/train_net.py or its metrics.json."
        )
    merged: Dict[int, dict] = {}
    with open(path) as f:
        for line in f:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(record, dict) or "iteration" not in record:
                continue
            merged.setdefault(int(record["iteration"]), {}).update(record)
    return dict(sorted(merged.items()))


def _series(records: Dict[int, dict], key: str):
    its = [it for it, r in records.items() if isinstance(r.get(key), (int, float))]
    return its, [records[it][key] for it in its]


def _keys(records: Dict[int, dict], predicate) -> List[str]:
    keys = set()
    for r in records.values():
        keys.update(k for k, v in r.items() if isinstance(v, (int, float)) and predicate(k))
    return sorted(keys)


def plot_metrics(path: str, out_path: Optional[str] = None, title: Optional[str] = None) -> str:
    """
    Plot the training losses (``*loss*``, log scale), the learning rate (``lr``) and the
    evaluation mIoU (keys with ``mIoU``, e.g. ``sem_seg/mIoU``, ``sem_seg/mIoU-parts``,
    ``paper_protocol/mIoU``) of a run to a PNG (matplotlib, Agg backend).

    Args:
        path: OUTPUT_DIR or its metrics.json.
        out_path: the PNG; default ``metrics.png`` next to metrics.json.
        title: figure title; default the folder name.

    Returns:
        the PNG's path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = load_metrics(path)
    folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    out_path = out_path or os.path.join(folder, "metrics.png")
    if not records:
        raise ValueError(f"No metrics records in {path} (did training log any iteration?)")
    loss_keys = _keys(records, lambda k: "loss" in k)
    miou_keys = _keys(records, lambda k: "mIoU" in k)

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    positive = True
    for key in loss_keys:
        its, values = _series(records, key)
        positive = positive and all(v > 0 for v in values)
        marker = "o" if len(its) <= 20 else None  # a short run: its few points stay visible
        ax.plot(its, values, label=key, lw=2.2 if key == "total_loss" else 1.2, marker=marker)
    if loss_keys and positive:
        ax.set_yscale("log")
    ax.set_title("training losses (median of the logging window)")
    ax.set_xlabel("iteration")
    if loss_keys:
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "no loss in metrics.json", ha="center", transform=ax.transAxes)

    ax = axes[1]
    its, values = _series(records, "lr")
    if its:
        ax.plot(its, values, color="tab:purple", marker="o" if len(its) <= 20 else None)
    else:
        ax.text(0.5, 0.5, "no lr in metrics.json", ha="center", transform=ax.transAxes)
    ax.set_title("learning rate")
    ax.set_xlabel("iteration")

    ax = axes[2]
    for key in miou_keys:
        its, values = _series(records, key)
        ax.plot(its, values, marker="o", label=key)
        ax.annotate(f"{values[-1]:.2f}", (its[-1], values[-1]), fontsize=8)
    if miou_keys:
        ax.legend(fontsize=7)
    else:
        ax.text(
            0.5,
            0.5,
            "no evaluation in metrics.json\n(TEST.EVAL_PERIOD, or the final evaluation)",
            ha="center",
            transform=ax.transAxes,
        )
    ax.set_title("evaluation mIoU (%)")
    ax.set_xlabel("iteration")
    fig.suptitle(title or os.path.basename(os.path.normpath(folder)))
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    fig.savefig(out_path, dpi=90)
    plt.close(fig)
    return out_path
