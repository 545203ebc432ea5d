"""Set criterion of WPS-SAM: classification + prompt distillation after Hungarian matching."""

import logging
import math
from typing import Dict, List, Optional, Tuple

import torch
from detectron2.utils.events import get_event_storage
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["SetCriterion", "dense_part_assignment", "dense_part_labels", "IGNORE_LABEL"]

logger = logging.getLogger(__name__)

IGNORE_LABEL = -100  # F.cross_entropy's default ignore_index
PROMPT_LOSS_NORMS = ("matched", "queries")


def dense_part_labels(
    classes: Tensor,
    side: int,
    frame_size: int,
    num_classes: int,
    boxes: Optional[Tensor] = None,
    points: Optional[Tensor] = None,
) -> Tensor:
    """(side, side) per-cell class targets: the labels of :func:`dense_part_assignment`."""
    return dense_part_assignment(classes, side, frame_size, num_classes, boxes, points)[0]


def dense_part_assignment(
    classes: Tensor,
    side: int,
    frame_size: int,
    num_classes: int,
    boxes: Optional[Tensor] = None,
    points: Optional[Tensor] = None,
) -> Tuple[Tensor, Tensor]:
    """Per-cell class targets on a ``side`` x ``side`` grid over the square input frame.

    Args:
        classes: (N,) part classes.
        side: cells per side of the grid; frame_size: the frame's side in pixels.
        boxes: (N, 4) xyxy part boxes in pixels (box supervision): a cell whose centre lies in
            boxes takes the class of the smallest of them; a box too small to hold any cell
            centre labels the cell holding its own centre, unless a box does; any other cell is
            "no part".
        points: (N, 2) xy part points (point supervision, used when ``boxes`` is None): a cell
            holding a point takes its class; the others are unknown (``IGNORE_LABEL``).
    Returns:
        labels: (side, side) int64 in [0, num_classes] or ``IGNORE_LABEL``;
        index: (side, side) int64, the part (box or point) each cell's label comes from, -1 where
            none.
    """
    device = classes.device
    if boxes is None and points is None:
        raise ValueError("dense_part_assignment needs boxes or points")
    index = torch.full((side, side), -1, dtype=torch.int64, device=device)
    if boxes is None:
        labels = torch.full((side, side), IGNORE_LABEL, dtype=torch.int64, device=device)
        cells = (points.float() * side / frame_size).long().clamp(0, side - 1)
        labels[cells[:, 1], cells[:, 0]] = classes.long()
        index[cells[:, 1], cells[:, 0]] = torch.arange(len(classes), device=device)
        return labels, index
    labels = torch.full((side, side), num_classes, dtype=torch.int64, device=device)
    if len(classes) == 0:
        return labels, index
    centres = (torch.arange(side, device=device, dtype=torch.float32) + 0.5) * frame_size / side
    boxes = boxes.float()
    inside_x = (centres[None] >= boxes[:, 0:1]) & (centres[None] < boxes[:, 2:3])  # N, side
    inside_y = (centres[None] >= boxes[:, 1:2]) & (centres[None] < boxes[:, 3:4])
    inside = inside_y[:, :, None] & inside_x[:, None, :]  # N, side (y), side (x)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    # Smallest box wins: the area of every box at the cells it holds, +inf elsewhere.
    cost = torch.where(inside, area[:, None, None], torch.full_like(area[:, None, None], math.inf))
    best_cost, best = cost.min(dim=0)
    covered = torch.isfinite(best_cost)
    labels[covered] = classes.long()[best[covered]]
    index[covered] = best[covered]
    # Parts smaller than a cell would otherwise only teach "no part" where they are.
    small = ~inside.flatten(1).any(dim=1)
    if small.any():
        centre_xy = (boxes[small, :2] + boxes[small, 2:]) / 2
        cells = (centre_xy * side / frame_size).long().clamp(0, side - 1)
        free = ~covered[cells[:, 1], cells[:, 0]]
        labels[cells[free, 1], cells[free, 0]] = classes.long()[small][free]
        index[cells[free, 1], cells[free, 0]] = small.nonzero()[:, 0][free]
    return labels, index


class SetCriterion(nn.Module):
    """The loss of paper eq. 4, averaged over the images of a batch.

    For one image with S queries, M parts, matched pairs (q, m) and unmatched queries targeting
    "no part"::

        L = class_weight * 1/S * sum_q w_{c_q} * CE(logits_q, c_q)
            + prompt_weight * 1/N * sum_{(q, m) matched} SmoothL1(p_q, p_m)

    where SmoothL1 is averaged over the T x D prompt values, ``w`` is 1 for parts and
    ``no_object_weight`` for "no part" (1.0 gives the paper's plain cross-entropy), and N is set by
    ``prompt_loss_norm``:

    * ``"matched"``: N = M, the number of matched parts (the authors' code: ``smooth_l1_loss``
      averaged over the M x T x D matched values). The default of every shipped recipe.
    * ``"queries"``: N = S (paper eq. 4 read literally: one 1/S in front of both terms). Its
      effective regression weight is M/S times the authors' (3 parts, 25 queries: 2.4 vs 20).

    An image without parts adds 0 to the prompt term under both (the authors' code gives NaN).

    With deep supervision the same loss, with its own matching, is added for the prediction of
    every earlier decoder layer (keys suffixed ``_0``, ``_1``, ...), as DETR does.

    With ``dense_class_weight`` > 0 and "memory_logits" in the outputs, ``loss_dense_cls`` adds
    ``dense_class_weight`` times the cross-entropy of every memory cell against the targets'
    "dense_labels" (see :func:`dense_part_labels`; cells with ``IGNORE_LABEL`` do not count).

    With ``dense_box_weight`` > 0 and "memory_boxes" in the outputs (two-stage query selection),
    ``loss_dense_box`` adds ``dense_box_weight`` times the L1 distance of the cells' proposed
    boxes to the targets' "dense_boxes", over the coordinates that "dense_box_weights" marks.
    """

    def __init__(
        self,
        num_classes: int,
        matcher: nn.Module,
        class_weight: float = 5.0,
        prompt_weight: float = 20.0,
        no_object_weight: float = 1.0,
        dense_class_weight: float = 0.0,
        dense_box_weight: float = 0.0,
        prompt_loss_norm: str = "matched",
    ):
        super().__init__()
        if prompt_loss_norm not in PROMPT_LOSS_NORMS:
            raise ValueError(
                f"prompt_loss_norm (MODEL.WPS_SAM.PROMPT_LOSS_NORM) must be one of "
                f"{PROMPT_LOSS_NORMS}, not {prompt_loss_norm!r}"
            )
        self.prompt_loss_norm = prompt_loss_norm
        self.dense_class_weight = dense_class_weight
        self.dense_box_weight = dense_box_weight
        self.num_classes = num_classes
        self.matcher = matcher
        self.class_weight = class_weight
        self.prompt_weight = prompt_weight
        empty_weight = torch.ones(num_classes + 1)
        empty_weight[-1] = no_object_weight
        self.register_buffer("empty_weight", empty_weight)

    def loss_labels(self, logits: Tensor, targets, indices) -> Tensor:
        b, s, _ = logits.shape
        target_classes = torch.full(
            (b, s), self.num_classes, dtype=torch.int64, device=logits.device
        )
        for i, (src, tgt) in enumerate(indices):
            target_classes[i, src.to(logits.device)] = targets[i]["labels"][tgt]
        ce = F.cross_entropy(logits.transpose(1, 2), target_classes, reduction="none")  # B, S
        weights = self.empty_weight[target_classes]
        return (weights * ce).sum(dim=1).div(s).mean()

    def loss_prompts(self, prompts: Tensor, targets, indices) -> Tensor:
        b, s = prompts.shape[:2]
        total = prompts.new_zeros(())
        for i, (src, tgt) in enumerate(indices):
            if src.numel() == 0:
                continue
            pred = prompts[i, src.to(prompts.device)].flatten(1)
            target = targets[i]["prompts"][tgt].flatten(1).to(pred.dtype)
            per_query = F.smooth_l1_loss(pred, target, reduction="none").mean(dim=1)
            norm = per_query.numel() if self.prompt_loss_norm == "matched" else s
            total = total + per_query.sum() / norm
        return total / b

    def loss_dense_boxes(self, boxes: Tensor, targets) -> Tensor:
        """Mean L1 over the supervised coordinates of (B, 4, M, M) proposed boxes."""
        if "dense_boxes" not in targets[0]:
            raise KeyError(
                "the dense box loss needs the targets' 'dense_boxes' and 'dense_box_weights' "
                "(WPSSAM provides them with MODEL.WPS_SAM.QUERY_SELECTION 'memory')"
            )
        target = torch.stack([t["dense_boxes"] for t in targets]).permute(0, 3, 1, 2)
        weights = torch.stack([t["dense_box_weights"] for t in targets]).permute(0, 3, 1, 2)
        l1 = (boxes - target.to(boxes.dtype)).abs() * weights
        return l1.sum() / weights.sum().clamp(min=1.0)

    def forward(
        self, outputs: Dict[str, Tensor], targets: List[Dict[str, Tensor]]
    ) -> Tuple[Dict[str, Tensor], List[Tuple[Tensor, Tensor]]]:
        """
        Args:
            outputs: "pred_logits" (B, S, C+1), "pred_prompts" (B, S, T, D), optionally
                "aux_outputs" (a list of dicts with the same two keys).
            targets: per image "labels" (M,) and "prompts" (M, T, D); "dense_labels" (M', M')
                when the dense loss is on.
        Returns:
            the loss dict {"loss_cls", "loss_prompt"} (already weighted; plus "loss_cls_<i>",
            "loss_prompt_<i>" per auxiliary output, and "loss_dense_cls" when the dense loss is
            on) and the matching of the final output.
        """
        losses, indices = self._weighted_losses(outputs, targets)
        if self.dense_class_weight > 0:
            if "memory_logits" not in outputs or "dense_labels" not in targets[0]:
                raise KeyError(
                    "dense_class_weight > 0 needs the prompter's 'memory_logits' and the "
                    "targets' 'dense_labels' (WPSSAM provides both when "
                    "MODEL.WPS_SAM.DENSE_CLASS_WEIGHT > 0)"
                )
            dense = torch.stack([t["dense_labels"] for t in targets])
            ce = F.cross_entropy(outputs["memory_logits"], dense, ignore_index=IGNORE_LABEL)
            # A batch whose cells are all unknown (points on nothing) gives NaN: count it as 0.
            losses["loss_dense_cls"] = self.dense_class_weight * torch.nan_to_num(ce)
        if self.dense_box_weight > 0 and "memory_boxes" in outputs:
            losses["loss_dense_box"] = self.dense_box_weight * self.loss_dense_boxes(
                outputs["memory_boxes"], targets
            )
        for i, aux in enumerate(outputs.get("aux_outputs", [])):
            aux_losses, _ = self._weighted_losses(aux, targets)
            losses.update({f"{k}_{i}": v for k, v in aux_losses.items()})
        self.log_statistics(outputs, targets)
        return losses, indices

    @staticmethod
    def log_statistics(outputs: Dict[str, Tensor], targets: List[Dict[str, Tensor]]) -> None:
        """``wps_sam/unmatched_parts`` (parts beyond the S queries, left out of the loss) and
        ``wps_sam/parts_per_image`` in the trainer's EventStorage (if any), and a warning when
        parts were left out."""
        num_queries = outputs["pred_logits"].shape[1]
        unmatched = sum(max(0, len(t["labels"]) - num_queries) for t in targets)
        try:
            storage = get_event_storage()
        except AssertionError:  # called outside a trainer's EventStorage
            storage = None
        if storage is not None:
            storage.put_scalar("wps_sam/unmatched_parts", unmatched)
            storage.put_scalar(
                "wps_sam/parts_per_image",
                sum(len(t["labels"]) for t in targets) / max(len(targets), 1),
            )
        if unmatched:
            logger.warning(
                f"{unmatched} parts in this batch exceed the {num_queries} queries and were left "
                "out of the loss (counted as wps_sam/unmatched_parts); raise "
                "MODEL.WPS_SAM.NUM_QUERIES if this is frequent."
            )

    def _weighted_losses(self, outputs, targets):
        indices = self.matcher(outputs, targets)
        losses = {
            "loss_cls": self.class_weight
            * self.loss_labels(outputs["pred_logits"], targets, indices),
            "loss_prompt": self.prompt_weight
            * self.loss_prompts(outputs["pred_prompts"], targets, indices),
        }
        return losses, indices
