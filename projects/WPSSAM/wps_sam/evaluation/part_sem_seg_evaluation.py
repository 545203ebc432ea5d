"""Standard semantic-segmentation metrics over parts + background, plus part-only means."""

import numpy as np
from detectron2.data import MetadataCatalog
from detectron2.evaluation import SemSegEvaluator

__all__ = ["PartSemSegEvaluator", "part_only_metrics"]


def part_only_metrics(conf_matrix, background_id):
    """
    Part-only mean IoU / mean accuracy from a detectron2 ``SemSegEvaluator`` confusion matrix.

    The definitions are exactly those of ``SemSegEvaluator`` restricted to the part classes:
    per class ``IoU = TP / (TP + FP + FN)`` and ``ACC = TP / (TP + FN)`` over pixels whose label is
    not ignore; ``mACC`` averages the classes present in the ground truth; ``mIoU`` sums the IoU of
    the classes present in the ground truth and divides by the number of classes present in the
    ground truth **or** in the predictions (a predicted class absent from the ground truth counts
    as 0, as in detectron2).

    Args:
        conf_matrix (ndarray): ``(K + 1) x (K + 1)`` int, rows = prediction, columns = ground
            truth, the last row/column = ignore (``SemSegEvaluator._conf_matrix``).
        background_id (int): the background class, excluded from the means.

    Returns:
        dict: ``mIoU`` and ``mACC`` in [0, 1] (NaN if no part occurs at all).
    """
    conf = np.asarray(conf_matrix, dtype=np.float64)[:-1, :-1]
    num_classes = conf.shape[0]
    parts = np.array([c != background_id for c in range(num_classes)])
    tp = np.diag(conf)
    pos_gt = conf.sum(axis=0)
    pos_pred = conf.sum(axis=1)
    gt_present = (pos_gt > 0) & parts
    any_present = ((pos_gt + pos_pred) > 0) & parts
    union = pos_gt + pos_pred - tp
    iou = np.divide(tp, union, out=np.zeros_like(tp), where=union > 0)
    acc = np.divide(tp, pos_gt, out=np.zeros_like(tp), where=pos_gt > 0)
    miou = iou[gt_present].sum() / any_present.sum() if any_present.any() else float("nan")
    macc = acc[gt_present].mean() if gt_present.any() else float("nan")
    return {"mIoU": float(miou), "mACC": float(macc)}


class PartSemSegEvaluator(SemSegEvaluator):
    """
    detectron2's :class:`~detectron2.evaluation.SemSegEvaluator` (the standard protocol of the
    paper's tables and of Compositor: one confusion matrix accumulated over all pixels of the
    split, classes = parts + background) with two extra numbers:

    * ``mIoU-parts``: mean IoU over the part classes only (background excluded),
    * ``mACC-parts``: mean pixel accuracy over the part classes only.

    Everything ``SemSegEvaluator`` reports is kept, under the same ``"sem_seg"`` key and in
    percent: ``mIoU``, ``fwIoU``, ``mACC``, ``pACC``, ``IoU-<class>``, ``ACC-<class>`` (background
    included). Predictions are the model's ``"sem_seg"`` output (``(C+1) x H x W`` scores at the
    original size, argmax taken); the ground truth is the dataset's ``sem_seg_file_name``.
    The background id is the metadata's ``background_id`` (default: the last stuff class).
    """

    def __init__(self, dataset_name, distributed=True, output_dir=None):
        super().__init__(dataset_name, distributed=distributed, output_dir=output_dir)
        meta = MetadataCatalog.get(dataset_name)
        self._background_id = meta.get("background_id", self._num_classes - 1)

    def evaluate(self):
        results = super().evaluate()
        if results is None:  # not the main process
            return None
        part = part_only_metrics(self._conf_matrix, self._background_id)
        res = results["sem_seg"]
        res["mIoU-parts"] = 100 * part["mIoU"]
        res["mACC-parts"] = 100 * part["mACC"]
        self._logger.info(
            f"Part-only (background excluded): mIoU {res['mIoU-parts']:.2f}, "
            f"mACC {res['mACC-parts']:.2f}"
        )
        return results
