"""The WPS-SAM paper's evaluation protocol: one score per (image, ground-truth part class).

The authors' code does not use the standard confusion-matrix mIoU. It builds one **entry** per
(image, ground-truth part category present in that image): the ground-truth mask is the union of
the pixels of that category, the prediction is the union of the predicted masks of that category
(an empty mask if no query predicted it), and the entry's score is the binary IoU of the two. The
metric is the mean over all entries of the split; a missed part scores 0 and a predicted part
absent from the ground truth creates no entry (it is not penalised).

:class:`PaperProtocolEvaluator` keeps that entry structure and scores each entry over the whole
image at its original size, with the prediction of a class the union (logical OR) of its
thresholded masks and ACC = |P & G| / |G|. Where the authors' code (xjwu1024/WPS-SAM, ``eval.py``
at ca580c7) does otherwise, ``authors_metrics=True`` reproduces it beside ours, never instead:

* **merge**: they *sum* the sigmoid probabilities of the masks of a class and threshold the sum at
  0.5, so two overlapping 0.3-probability masks mark a pixel that neither marks alone;
* **frame**: masks are compared in the 1024 x 1024 frame SAM sees (longest side resized to 1024,
  the rest padded with zeros, centred);
* **IoU and accuracy per pixel row**: each ``H x W`` mask pair is passed to a *batched* binary
  metric (segmentation-models-pytorch, ``micro-imagewise``) that expects ``N x ...`` inputs, so it
  computes one score per pixel **row** and averages the rows; rows that neither mask touches
  score 1, so the score is dominated by empty rows (an empty prediction for a part covering 10% of
  the rows scores about 0.90);
* **accuracy** is pixel accuracy (tp + tn) / n, true negatives included;
* an image for which no query was kept adds **one** entry scoring 0, whatever its part count.
"""

import itertools
import logging
from collections import OrderedDict, defaultdict

import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils.comm import all_gather, is_main_process, synchronize
from detectron2.utils.file_io import PathManager
from PIL import Image
from segment_anything.utils.transforms import ResizeLongestSide
from torch.nn import functional as F

__all__ = [
    "PaperProtocolEvaluator",
    "authors_frame",
    "binary_iou",
    "row_averaged_binary_iou",
    "row_averaged_pixel_accuracy",
]


def binary_iou(pred, gt):
    """
    IoU of two boolean masks of the same shape over all their pixels (1.0 if both are empty).
    """
    inter = np.logical_and(pred, gt).sum()
    union = np.logical_or(pred, gt).sum()
    return float(inter / union) if union > 0 else 1.0


def row_averaged_binary_iou(pred, gt, empty_row_score=1.0):
    """
    The authors' (buggy) score of one entry: binary IoU computed per pixel row of the ``H x W``
    masks, then averaged over the ``H`` rows; rows empty in both masks score ``empty_row_score``.
    For comparison only: it is not a segmentation metric.
    """
    pred = np.asarray(pred, dtype=bool)
    gt = np.asarray(gt, dtype=bool)
    inter = np.logical_and(pred, gt).sum(axis=1).astype(np.float64)
    union = np.logical_or(pred, gt).sum(axis=1).astype(np.float64)
    per_row = np.divide(inter, union, out=np.full_like(inter, empty_row_score), where=union > 0)
    return float(per_row.mean())


def row_averaged_pixel_accuracy(pred, gt):
    """The authors' accuracy of one entry: (tp + tn) / W per pixel row, averaged over the rows."""
    pred = np.asarray(pred, dtype=bool)
    gt = np.asarray(gt, dtype=bool)
    return float((pred == gt).mean(axis=1).mean())


def authors_frame(array, target_length=1024, mode="nearest", fill=0):
    """``array`` (H, W) or (K, H, W) in the authors' frame: longest side resized to
    ``target_length`` (SAM's ResizeLongestSide), then padded with ``fill`` to ``target_length``
    squared with the image centred. ``mode``: "nearest" (label maps, padded with the background
    id) or "bilinear" (probabilities, padded with 0)."""
    t = torch.as_tensor(np.asarray(array))
    squeeze = t.dim() == 2
    t = t[None] if squeeze else t
    h, w = t.shape[-2:]
    nh, nw = ResizeLongestSide.get_preprocess_shape(h, w, target_length)
    kwargs = {"align_corners": False} if mode == "bilinear" else {}
    resized = F.interpolate(t[None].double(), (nh, nw), mode=mode, **kwargs)[0].to(t.dtype)
    top, left = (target_length - nh) // 2, (target_length - nw) // 2
    out = t.new_full((t.shape[0], target_length, target_length), fill)
    out[:, top : top + nh, left : left + nw] = resized
    out = out.numpy()
    return out[0] if squeeze else out


class PaperProtocolEvaluator(DatasetEvaluator):
    """
    Per (image, ground-truth part category) binary IoU, averaged over entries (see module doc).

    For each image and each part class ``c`` present in the ground-truth label map (not background,
    not ignore): ``G`` = pixels labelled ``c``; ``P`` = union of the predicted masks of class ``c``
    (``prediction_source="instances"``: the model's ``instances.pred_masks`` with
    ``pred_classes == c``, as the authors do; ``"sem_seg"``: pixels where the argmax of the
    model's ``sem_seg`` is ``c``), with ignore pixels removed. The entry scores
    ``IoU = |P & G| / |P | G|`` and ``ACC = |P & G| / |G|`` (0 when no mask of class ``c`` was
    predicted).

    Reports, under ``"paper_protocol"`` (percent): ``mIoU`` and ``mACC`` (means over entries),
    ``IoU-<class>`` / ``ACC-<class>`` (means over the entries of that class, NaN if none),
    ``num_entries``, and with ``report_row_averaged=True`` also ``mIoU-row-averaged`` (our entries
    and merge, the authors' row averaging, in the original frame).

    With ``authors_metrics=True`` it also reports the authors' exact numbers (module doc):
    ``mIoU-authors``, ``mACC-authors``, ``num_entries-authors`` and ``null_images-authors``. Their
    merge needs the per-mask probabilities: ``instances.pred_mask_probs`` (K, H, W) when the
    model gives them (every model of this project does), else the binary ``pred_masks``.
    """

    def __init__(
        self,
        dataset_name,
        distributed=True,
        output_dir=None,
        *,
        prediction_source="instances",
        report_row_averaged=False,
        authors_metrics=False,
        authors_frame_size=1024,
    ):
        """
        Args:
            dataset_name (str): a registered dataset with ``sem_seg_file_name`` in its dicts and
                ``stuff_classes``, ``ignore_label``, ``background_id`` in its metadata.
            distributed (bool): gather the entries of all processes.
            output_dir (str or None): unused (kept for detectron2's evaluator signature).
            prediction_source (str): ``"instances"`` or ``"sem_seg"`` (see class doc). With
                ``"instances"``, an output without ``"instances"`` falls back to ``"sem_seg"``.
            report_row_averaged (bool): also compute the row-averaged IoU of our entries.
            authors_metrics (bool): also compute the authors' exact numbers (class doc).
            authors_frame_size (int): side of the authors' square frame (SAM's input, 1024); 0
                scores their metrics at the original size.
        """
        if prediction_source not in ("instances", "sem_seg"):
            raise ValueError(
                f"prediction_source must be 'instances' or 'sem_seg', got {prediction_source!r}"
            )
        self._logger = logging.getLogger(__name__)
        self._dataset_name = dataset_name
        self._distributed = distributed
        self._output_dir = output_dir
        self._source = prediction_source
        self._report_row_averaged = report_row_averaged
        self._authors_metrics = authors_metrics
        self._authors_frame_size = authors_frame_size
        meta = MetadataCatalog.get(dataset_name)
        self._class_names = list(meta.stuff_classes)
        self._ignore_label = meta.get("ignore_label", 255)
        self._background_id = meta.get("background_id", len(self._class_names) - 1)
        self._input_file_to_gt_file = {
            d["file_name"]: d["sem_seg_file_name"] for d in DatasetCatalog.get(dataset_name)
        }

    def reset(self):
        # One (class id, IoU, ACC, row-averaged IoU or NaN) tuple per entry.
        self._entries = []
        # The authors' entries: (IoU, ACC) each; and the number of images without predictions.
        self._authors_entries = []
        self._null_images = 0

    def _read_gt(self, inp):
        gt_file = self._input_file_to_gt_file.get(inp["file_name"])
        if gt_file is None:
            if "sem_seg" not in inp:
                raise KeyError(
                    f"{inp['file_name']} is not in dataset '{self._dataset_name}' and its input "
                    "has no 'sem_seg': no ground truth to score it against."
                )
            return np.asarray(inp["sem_seg"].cpu(), dtype=np.int64)
        with PathManager.open(gt_file, "rb") as f:
            return np.array(Image.open(f), dtype=np.int64)

    def _class_masks(self, output, shape):
        """Predicted class -> union mask (H x W bool)."""
        masks = {}
        if self._source == "instances" and "instances" in output:
            inst = output["instances"].to("cpu")
            pred_masks = inst.pred_masks.numpy().astype(bool) if len(inst) else None
            for i, c in enumerate(inst.pred_classes.tolist()):
                if pred_masks[i].shape != shape:
                    raise ValueError(
                        f"pred_masks are {pred_masks[i].shape}, the ground truth is {shape}: "
                        "instances must be at the original image size."
                    )
                masks[c] = masks[c] | pred_masks[i] if c in masks else pred_masks[i].copy()
        else:
            labels = output["sem_seg"].argmax(dim=0).cpu().numpy()
            if labels.shape != shape:
                raise ValueError(f"sem_seg is {labels.shape}, the ground truth is {shape}.")
            for c in np.unique(labels).tolist():
                masks[c] = labels == c
        return masks

    def process(self, inputs, outputs):
        for inp, output in zip(inputs, outputs):
            gt = self._read_gt(inp)
            valid = gt != self._ignore_label
            pred_masks = self._class_masks(output, gt.shape)
            for c in np.unique(gt[valid]).tolist():
                if c == self._background_id:
                    continue
                g = gt == c
                p = pred_masks.get(c)
                p = np.zeros_like(g) if p is None else np.logical_and(p, valid)
                inter = np.logical_and(p, g).sum()
                iou = inter / np.logical_or(p, g).sum()
                acc = inter / g.sum()
                row = row_averaged_binary_iou(p, g) if self._report_row_averaged else np.nan
                self._entries.append((int(c), float(iou), float(acc), float(row)))
            if self._authors_metrics:
                self._process_authors(gt, output)

    def _process_authors(self, gt, output):
        """The authors' entries of one image (module doc)."""
        inst = output.get("instances")
        if inst is None:
            raise KeyError("authors_metrics needs the model's 'instances' (per-mask predictions)")
        inst = inst.to("cpu")
        parts = [
            c for c in np.unique(gt).tolist() if c not in (self._background_id, self._ignore_label)
        ]
        if not parts:
            return
        if len(inst) == 0:
            self._null_images += 1
            self._authors_entries.append((0.0, 0.0))
            return
        probs = inst.get("pred_mask_probs") if inst.has("pred_mask_probs") else inst.pred_masks
        probs = probs.float().numpy()
        classes = inst.pred_classes.numpy()
        size = self._authors_frame_size
        if size:
            gt = authors_frame(gt.astype(np.int64), size, "nearest", self._background_id)
            probs = authors_frame(probs, size, "bilinear")
            parts = [c for c in parts if (gt == c).any()]
        for c in parts:
            g = gt == c
            if not (classes == c).any():
                self._authors_entries.append((0.0, 0.0))
                continue
            p = probs[classes == c].sum(axis=0) > 0.5
            self._authors_entries.append(
                (row_averaged_binary_iou(p, g), row_averaged_pixel_accuracy(p, g))
            )

    def evaluate(self):
        entries, authors, nulls = self._entries, self._authors_entries, self._null_images
        if self._distributed:
            synchronize()
            entries = list(itertools.chain(*all_gather(self._entries)))
            authors = list(itertools.chain(*all_gather(self._authors_entries)))
            nulls = sum(all_gather(self._null_images))
            if not is_main_process():
                return None
        if not entries:
            self._logger.warning(
                f"[{self._dataset_name}] paper protocol: no ground-truth part in the evaluated "
                "images, nothing to score."
            )
            return OrderedDict({"paper_protocol": {"mIoU": float("nan"), "num_entries": 0}})
        arr = np.asarray(entries, dtype=np.float64)
        res = OrderedDict()
        res["mIoU"] = 100 * arr[:, 1].mean()
        res["mACC"] = 100 * arr[:, 2].mean()
        res["num_entries"] = len(entries)
        if self._report_row_averaged:
            res["mIoU-row-averaged"] = 100 * arr[:, 3].mean()
        if self._authors_metrics:
            a = np.asarray(authors, dtype=np.float64).reshape(-1, 2)
            res["mIoU-authors"] = 100 * a[:, 0].mean() if len(a) else float("nan")
            res["mACC-authors"] = 100 * a[:, 1].mean() if len(a) else float("nan")
            res["num_entries-authors"] = len(a)
            res["null_images-authors"] = nulls
        per_class = defaultdict(list)
        for c, iou, acc, _ in entries:
            per_class[c].append((iou, acc))
        for c, name in enumerate(self._class_names):
            if c == self._background_id:
                continue
            vals = np.asarray(per_class.get(c, []), dtype=np.float64).reshape(-1, 2)
            res[f"IoU-{name}"] = 100 * vals[:, 0].mean() if len(vals) else float("nan")
        for c, name in enumerate(self._class_names):
            if c == self._background_id:
                continue
            vals = np.asarray(per_class.get(c, []), dtype=np.float64).reshape(-1, 2)
            res[f"ACC-{name}"] = 100 * vals[:, 1].mean() if len(vals) else float("nan")
        self._logger.info(
            f"Paper protocol on {self._dataset_name}: mIoU {res['mIoU']:.2f}, mACC "
            f"{res['mACC']:.2f} over {len(entries)} (image, part) entries."
        )
        return OrderedDict({"paper_protocol": res})
