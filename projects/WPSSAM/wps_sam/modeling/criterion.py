"""Set criterion of WPS-SAM: classification + prompt distillation after Hungarian matching."""

from typing import Dict, List, Tuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["SetCriterion"]


class SetCriterion(nn.Module):
    """The loss of paper eq. 4, averaged over the images of a batch.

    For one image with S queries, matched pairs (q, m) and unmatched queries targeting "no part"::

        L = 1/S * sum_q [ class_weight * w_{c_q} * CE(logits_q, c_q)
                          + 1{c_q != no part} * prompt_weight * SmoothL1(p_q, p_m) ]

    where SmoothL1 is averaged over the T x D prompt values and ``w`` is 1 for parts and
    ``no_object_weight`` for "no part" (1.0 gives the paper's plain cross-entropy).

    With deep supervision the same loss, with its own matching, is added for the prediction of
    every earlier decoder layer (keys suffixed ``_0``, ``_1``, ...), as DETR does.
    """

    def __init__(
        self,
        num_classes: int,
        matcher: nn.Module,
        class_weight: float = 5.0,
        prompt_weight: float = 20.0,
        no_object_weight: float = 1.0,
    ):
        super().__init__()
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
            total = total + per_query.sum() / s
        return total / b

    def forward(
        self, outputs: Dict[str, Tensor], targets: List[Dict[str, Tensor]]
    ) -> Tuple[Dict[str, Tensor], List[Tuple[Tensor, Tensor]]]:
        """
        Args:
            outputs: "pred_logits" (B, S, C+1), "pred_prompts" (B, S, T, D), optionally
                "aux_outputs" (a list of dicts with the same two keys).
            targets: per image "labels" (M,) and "prompts" (M, T, D).
        Returns:
            the loss dict {"loss_cls", "loss_prompt"} (already weighted; plus "loss_cls_<i>",
            "loss_prompt_<i>" per auxiliary output) and the matching of the final output.
        """
        losses, indices = self._weighted_losses(outputs, targets)
        for i, aux in enumerate(outputs.get("aux_outputs", [])):
            aux_losses, _ = self._weighted_losses(aux, targets)
            losses.update({f"{k}_{i}": v for k, v in aux_losses.items()})
        return losses, indices

    def _weighted_losses(self, outputs, targets):
        indices = self.matcher(outputs, targets)
        losses = {
            "loss_cls": self.class_weight
            * self.loss_labels(outputs["pred_logits"], targets, indices),
            "loss_prompt": self.prompt_weight
            * self.loss_prompts(outputs["pred_prompts"], targets, indices),
        }
        return losses, indices
