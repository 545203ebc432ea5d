"""The merge rule shared by every model that turns SAM part masks into the project's outputs.

WPS-SAM (prompter queries), SAM with ground-truth prompts, Det-SAM (detector boxes) and the
pseudo-label writer all produce K part masks with a class and a score each; this module merges
them into the same ``"sem_seg"`` + ``"instances"`` outputs, so that they are scored identically.
"""

from typing import Dict, List, Optional, Tuple

import torch
from detectron2.structures import BitMasks, Boxes, Instances
from torch import Tensor

__all__ = ["merge_part_masks", "part_segmentation_result", "prompted_part_results"]


def merge_part_masks(
    mask_logits: Tensor, classes: Tensor, scores: Tensor, num_classes: int, mask_threshold=0.0
) -> Tensor:
    """Merge K part masks into (C+1, H, W) scores (channel C = background).

    Merge rule: a mask covers pixel x where its logit exceeds ``mask_threshold``; there it scores
    ``score * sigmoid(logit)``. Part channel c is the maximum over the masks of class c (0 where
    none covers x), so overlaps go to the most confident mask (with equal scores, e.g. ground-truth
    prompts, to the highest mask logit). The background channel is 1 where no mask covers x and 0
    elsewhere, so the argmax is background exactly at the pixels no part mask covers.

    Args:
        mask_logits: (K, H, W) mask logits.
        classes: (K,) int part classes in [0, C).
        scores: (K,) confidences in [0, 1].
        num_classes: C.
        mask_threshold: logit threshold.
    """
    h, w = mask_logits.shape[-2:]
    sem = mask_logits.new_zeros((num_classes + 1, h, w))
    covered = mask_logits > mask_threshold
    per_mask = scores[:, None, None].to(mask_logits) * mask_logits.sigmoid() * covered
    for c in classes.unique().tolist():
        sem[c] = per_mask[classes == c].amax(dim=0)
    sem[num_classes] = (~covered.any(dim=0)).float() if len(classes) else 1.0
    return sem


def part_segmentation_result(
    mask_logits: Tensor,
    classes: Tensor,
    scores: Tensor,
    num_classes: int,
    mask_threshold=0.0,
    boxes: Optional[Tensor] = None,
    with_probs: bool = False,
) -> Dict:
    """One image's model output: {"sem_seg": (C+1, H, W), "instances": Instances((H, W))}.

    ``instances`` holds pred_masks (K, H, W) bool, pred_classes (K,), scores (K,) and pred_boxes:
    ``boxes`` (K, 4) xyxy at the output size when given (e.g. the detector's boxes), else the
    bounding boxes of the masks. With ``with_probs`` it also holds pred_mask_probs (K, H, W), the
    masks' sigmoid probabilities in float16 (the authors' merge needs them; see
    :class:`~wps_sam.evaluation.PaperProtocolEvaluator`).
    """
    h, w = mask_logits.shape[-2:]
    instances = Instances((h, w))
    instances.pred_masks = mask_logits > mask_threshold
    instances.pred_classes = classes
    instances.scores = scores
    if with_probs:
        instances.pred_mask_probs = mask_logits.sigmoid().half()
    if boxes is None:
        instances.pred_boxes = BitMasks(instances.pred_masks).get_bounding_boxes()
    else:
        instances.pred_boxes = Boxes(boxes.reshape(-1, 4).to(torch.float32))
    sem_seg = merge_part_masks(mask_logits, classes, scores, num_classes, mask_threshold)
    return {"sem_seg": sem_seg, "instances": instances}


def prompted_part_results(
    sam,
    embeddings: Tensor,
    batched_inputs: List[Dict],
    prompts: List[Tuple[Tensor, Tensor, Tensor]],
    num_classes: int,
    mask_threshold=0.0,
    with_probs: bool = False,
) -> List[Dict]:
    """The outputs of a promptable model: image i's prompts ``(tokens, classes, scores)`` decoded by
    the frozen foundation ``sam`` on ``embeddings[i]`` at the input's output size, then merged
    (:func:`part_segmentation_result`)."""
    results = []
    for embedding, x, (tokens, classes, scores) in zip(embeddings, batched_inputs, prompts):
        logits = sam.decode_input(embedding, tokens, x)
        results.append(
            part_segmentation_result(
                logits, classes, scores, num_classes, mask_threshold, with_probs=with_probs
            )
        )
    return results
