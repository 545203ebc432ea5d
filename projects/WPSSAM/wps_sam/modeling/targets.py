"""WPS-SAM's training targets from the weak labels: teacher prompts, dense labels and boxes."""

from typing import Dict, List, Optional

import torch
from detectron2.structures import Instances
from torch import Tensor
from torch.nn import functional as F
from torchvision.ops import box_convert

from .criterion import dense_part_assignment
from .teacher import PromptEncoderTeacher

__all__ = ["WeakLabelTargets"]


class WeakLabelTargets:
    """Per image: "labels" (M,) and "prompts" (M, T, D) (the frozen teacher's encoding of the part
    boxes or points), and with the dense losses on, the targets of :meth:`dense_targets`.

    Args:
        teacher: the foundation's prompt encoder on the supervision's weak labels.
        num_classes: C part classes ("no part" is C).
        memory_size: side of the prompter's memory grid (the dense targets' grid).
        frame_size: side of the foundation's square input frame, in pixels.
        dense_labels: also build "dense_labels" (MODEL.WPS_SAM.DENSE_CLASS_WEIGHT > 0).
        dense_boxes: also build "dense_boxes" / "dense_box_weights" (two-stage selection).
    """

    def __init__(
        self,
        teacher: PromptEncoderTeacher,
        num_classes: int,
        memory_size: int,
        frame_size: int,
        dense_labels: bool = False,
        dense_boxes: bool = False,
    ):
        self.teacher = teacher
        self.num_classes = num_classes
        self.memory_size = memory_size
        self.frame_size = frame_size
        self.dense_labels = dense_labels
        self.dense_boxes = dense_boxes

    def __call__(self, batched_inputs: List[Dict], device) -> List[Dict[str, Tensor]]:
        targets = []
        for x in batched_inputs:
            if "instances" not in x:
                raise KeyError(
                    "Training needs 'instances' with gt_boxes/gt_classes in every input "
                    "(WPSSAMDatasetMapper with is_train=True provides them)"
                )
            inst = x["instances"].to(device)
            points = inst.gt_points if inst.has("gt_points") else None
            prompts = self.teacher(inst.gt_boxes.tensor, points)
            target = {"labels": inst.gt_classes.long(), "prompts": prompts}
            if self.dense_labels:
                target.update(self.dense_targets(inst, points))
            targets.append(target)
        return targets

    def dense_targets(self, inst: Instances, points: Optional[Tensor]) -> Dict[str, Tensor]:
        """Targets of the dense auxiliary losses, from the weak label of the supervision only.

        Returns "dense_labels" (M, M) (see :func:`~.criterion.dense_part_labels`) and, for
        two-stage query selection, "dense_boxes" (M, M, 4): the normalised (cx, cy, w, h) box of
        the part that labels each cell, with "dense_box_weights" (M, M, 4) marking the supervised
        coordinates (all four under box supervision, the centre only under point supervision).
        """
        box_supervision = self.teacher.supervision == "box"
        if box_supervision:
            weak = {"boxes": inst.gt_boxes.tensor}
        else:  # the annotated points, else (as the point teacher) the box centres
            if points is None:
                points = inst.gt_boxes.get_centers()
            weak = {"points": points}
        labels, index = dense_part_assignment(
            inst.gt_classes, self.memory_size, self.frame_size, self.num_classes, **weak
        )
        targets = {"dense_labels": labels}
        if self.dense_boxes:
            if box_supervision:
                boxes = box_convert(inst.gt_boxes.tensor.float(), "xyxy", "cxcywh")
                coords = torch.ones(4, device=boxes.device)
            else:  # point supervision: ``points`` was resolved above
                boxes = F.pad(points.float(), (0, 2))
                coords = torch.tensor([1.0, 1.0, 0.0, 0.0], device=boxes.device)
            boxes = boxes / self.frame_size
            found = index >= 0
            dense = boxes.new_zeros((*index.shape, 4))
            dense[found] = boxes[index[found]]
            targets["dense_boxes"] = dense
            targets["dense_box_weights"] = found[..., None].float() * coords
        return targets
