"""SAM pseudo-labels (the paper's Table 5 paradigm): the frozen SAM prompted with every training
image's ground-truth part boxes writes a label map, on which any semantic-segmentation model trains.

Label maps follow the dataset's conventions: part ids ``0..C-1``, background ``C`` (the metadata's
``background_id``), ``255`` ignore. A pixel is labelled by the project's merge rule
(:func:`~wps_sam.modeling.mask_merge.merge_part_masks`, the rule of every WPS-SAM output): where no
part mask covers it, background; where one does, its part; where several overlap, with
``overlap="score"`` the mask with the highest SAM mask logit there (all ground-truth prompts score
1), with ``overlap="ignore"`` 255. The label maps are therefore exactly the argmax of the
"SAM + GT boxes" model (META_ARCHITECTURE ``SAMGTPrompted``) used as the benchmark's upper bound,
which writes them: it holds the frozen foundation, this module only maps and writes.

Writes are atomic (``<stem>.png.tmp`` then ``os.replace``), so a killed run leaves only complete
PNGs and a rerun writes only the missing ones. ``pseudo_label_info.json`` records the SAM and the
rule; writing into a folder made by another SAM or rule is refused.
"""

import json
import logging
import os
from typing import Dict, Optional

import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image
from tqdm import tqdm

from ..evaluation.part_sem_seg_evaluation import part_only_metrics
from .dataset_mappers.wps_sam_dataset_mapper import WPSSAMDatasetMapper

__all__ = [
    "OVERLAP_RULES",
    "default_pseudo_label_dir",
    "generate_pseudo_labels",
    "label_map_from_output",
    "pseudo_label_path",
    "pseudo_label_quality",
]

logger = logging.getLogger(__name__)

OVERLAP_RULES = ("score", "ignore")
INFO_FILE = "pseudo_label_info.json"
IGNORE = 255


def default_pseudo_label_dir(dataset_name: str) -> str:
    """``<label-map folder of the dataset>_sam_pseudo``, e.g. ``annotations/train_sam_pseudo``."""
    root = MetadataCatalog.get(dataset_name).get("sem_seg_root", None)
    if not root:
        raise ValueError(
            f"Dataset {dataset_name!r} has no sem_seg_root metadata: pass the output folder."
        )
    return os.path.normpath(root) + "_sam_pseudo"


def pseudo_label_path(label_dir: str, file_name: str) -> str:
    """``<label_dir>/<image stem>.png``."""
    return os.path.join(label_dir, os.path.splitext(os.path.basename(file_name))[0] + ".png")


def label_map_from_output(output: Dict, overlap: str = "score") -> np.ndarray:
    """(H, W) uint8 label map from a model output ("sem_seg" (C+1, H, W), "instances").

    ``overlap="ignore"`` writes 255 where two or more ``instances.pred_masks`` overlap.
    """
    if overlap not in OVERLAP_RULES:
        raise ValueError(f"PSEUDO_LABELS.OVERLAP must be one of {OVERLAP_RULES}, not {overlap!r}")
    labels = output["sem_seg"].argmax(dim=0)
    if overlap == "ignore" and len(output["instances"]):
        overlapping = output["instances"].pred_masks.sum(dim=0) > 1
        labels[overlapping] = IGNORE
    if labels.max() > 255:
        raise ValueError("More than 255 classes do not fit a uint8 PNG label map")
    return labels.to(torch.uint8).cpu().numpy()


def _write_png(path: str, labels: np.ndarray) -> None:
    tmp = path + ".tmp"
    Image.fromarray(labels).save(tmp, format="PNG")
    os.replace(tmp, path)  # never a truncated PNG under the final name


def _check_or_write_info(label_dir: str, info: dict, overwrite: bool) -> None:
    path = os.path.join(label_dir, INFO_FILE)
    if os.path.exists(path):
        with open(path) as f:
            existing = json.load(f)
        if existing == info:
            return
        if not overwrite:
            raise ValueError(
                f"The pseudo-labels in {label_dir} were made by another SAM or rule ({existing}); "
                f"this run's are {info}. Delete the folder, choose another output folder, or "
                "pass --overwrite to rewrite every label map."
            )
        for name in os.listdir(label_dir):
            if name.endswith(".png"):
                os.remove(os.path.join(label_dir, name))
    os.makedirs(label_dir, exist_ok=True)
    with open(path, "w") as f:
        json.dump(info, f, indent=1, sort_keys=True)


@torch.no_grad()
def generate_pseudo_labels(
    cfg,
    model,
    dataset_name: str,
    label_dir: Optional[str] = None,
    batch_size: int = 8,
    overlap: str = "score",
    overwrite: bool = False,
    max_images: Optional[int] = None,
) -> Dict:
    """Write the SAM pseudo-label map of every image of ``dataset_name`` that lacks one.

    Args:
        cfg: the config ``model`` was built from (its SAM, mapper and embedding cache).
        model: a :class:`wps_sam.gt_prompted_sam_model.SAMGTPrompted` (SAM prompted with the
            ground-truth boxes, or points).
        dataset_name: a registered dataset with part boxes ("annotations").
        label_dir: output folder; None = :func:`default_pseudo_label_dir`.
        batch_size: images per model call (one encoder call for the uncached ones).
        overlap: "score" or "ignore" (module docstring).
        overwrite: rewrite a folder made by another SAM or rule.
        max_images: stop after writing this many (None: all); a later call continues.
    Returns:
        {"label_dir", "written", "present", "images"}.
    """
    from ..gt_prompted_sam_model import SAMGTPrompted
    from .embedding_cache import sam_fingerprint

    if not isinstance(model, SAMGTPrompted):
        raise ValueError(
            "Pseudo-labels come from SAM prompted with the ground-truth parts: use a config with "
            "MODEL.META_ARCHITECTURE 'SAMGTPrompted' (e.g. configs/synthetic/sam_tiny_gt_box.yaml)."
        )
    if overlap not in OVERLAP_RULES:
        raise ValueError(f"PSEUDO_LABELS.OVERLAP must be one of {OVERLAP_RULES}, not {overlap!r}")
    label_dir = label_dir or default_pseudo_label_dir(dataset_name)
    info = {
        **sam_fingerprint(cfg),
        "prompt_source": model.prompt_source,
        "overlap": overlap,
        "mask_threshold": float(model.mask_threshold),
        "source_dataset": dataset_name,
    }
    _check_or_write_info(label_dir, info, overwrite)
    dicts = DatasetCatalog.get(dataset_name)
    todo = [d for d in dicts if not os.path.exists(pseudo_label_path(label_dir, d["file_name"]))]
    if max_images is not None:
        todo = todo[:max_images]
    counts = {"label_dir": label_dir, "written": 0, "present": len(dicts) - len(todo)}
    mapper = WPSSAMDatasetMapper(cfg, is_train=True)  # boxes, never the real label maps
    was_training = model.training
    model.eval()
    for start in tqdm(
        range(0, len(todo), batch_size), desc=f"SAM pseudo-labels -> {label_dir}", unit="batch"
    ):
        chunk = todo[start : start + batch_size]
        inputs = [mapper(d) for d in chunk]
        for d, output in zip(chunk, model(inputs)):
            _write_png(
                pseudo_label_path(label_dir, d["file_name"]), label_map_from_output(output, overlap)
            )
            counts["written"] += 1
    model.train(was_training)
    counts["images"] = counts["written"] + counts["present"]
    logger.info(f"SAM pseudo-labels of {dataset_name}: {counts}")
    return counts


def pseudo_label_quality(dataset_name: str, label_dir: str) -> Optional[Dict]:
    """mIoU of the pseudo-labels against the dataset's real label maps, where those exist.

    The confusion matrix is accumulated over every pixel of every image that has both maps,
    pixels labelled 255 in either left out (as detectron2's SemSegEvaluator does). Returns
    {"mIoU", "mIoU-parts", "pixel_acc", "num_images", "ignored_fraction"} in percent (mIoU as
    SemSegEvaluator's, background included; mIoU-parts without it), or None without real maps.
    """
    meta = MetadataCatalog.get(dataset_name)
    num_classes = len(meta.stuff_classes)
    background = meta.get("background_id", num_classes - 1)
    conf = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)
    images, ignored, total = 0, 0, 0
    for d in DatasetCatalog.get(dataset_name):
        real, pseudo = d.get("sem_seg_file_name"), pseudo_label_path(label_dir, d["file_name"])
        if not real or not os.path.exists(real) or not os.path.exists(pseudo):
            continue
        gt = np.asarray(Image.open(real), dtype=np.int64)
        pred = np.asarray(Image.open(pseudo), dtype=np.int64)
        if gt.shape != pred.shape:
            raise ValueError(f"{pseudo} is {pred.shape}, its real label map {real} {gt.shape}")
        ignored += int((pred == IGNORE).sum())
        total += pred.size
        valid = (gt != IGNORE) & (pred != IGNORE)
        conf += np.bincount(
            (num_classes + 1) * pred[valid] + gt[valid], minlength=(num_classes + 1) ** 2
        ).reshape(num_classes + 1, num_classes + 1)
        images += 1
    if not images:
        return None
    c = conf[:-1, :-1].astype(np.float64)
    tp, pos_gt, pos_pred = np.diag(c), c.sum(0), c.sum(1)
    union = pos_gt + pos_pred - tp
    iou = np.divide(tp, union, out=np.zeros_like(tp), where=union > 0)
    # detectron2's SemSegEvaluator mean: classes in the ground truth over classes in either map.
    miou = iou[pos_gt > 0].sum() / max(((pos_gt + pos_pred) > 0).sum(), 1)
    return {
        "mIoU": 100 * float(miou),
        "mIoU-parts": 100 * part_only_metrics(conf, background)["mIoU"],
        "pixel_acc": 100 * float(tp.sum() / max(c.sum(), 1)),
        "num_images": images,
        "ignored_fraction": 100 * ignored / max(total, 1),
    }
