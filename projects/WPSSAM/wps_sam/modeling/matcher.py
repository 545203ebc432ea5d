"""Hungarian matching between the prompter's queries and the teacher's part prompts."""

from typing import Dict, List, Tuple

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

__all__ = ["HungarianMatcher"]


class HungarianMatcher(nn.Module):
    """Optimal one-to-one assignment of queries to ground-truth parts (paper eq. 2-3).

    The cost of assigning query q to part m is
    ``cost_class * (-softmax(logits_q)[c_m]) + cost_prompt * ||p_q - p_m||_2``, the L2 distance
    taken over the flattened prompt tokens (T x D = 512 values for boxes). The assignment is
    rectangular: with more parts than queries, only S parts are matched (the rest are left out of
    this step's loss and counted by the caller).
    """

    def __init__(self, cost_class: float = 10.0, cost_prompt: float = 1.0):
        super().__init__()
        if cost_class == 0 and cost_prompt == 0:
            raise ValueError("HungarianMatcher: all costs are 0")
        self.cost_class = cost_class
        self.cost_prompt = cost_prompt

    @torch.no_grad()
    def cost_matrix(self, logits: Tensor, prompts: Tensor, target: Dict[str, Tensor]) -> Tensor:
        """(S, M) cost of one image: logits (S, C+1), prompts (S, T, D), target labels (M,) and
        prompts (M, T, D)."""
        prob = logits.float().softmax(-1)
        cost_class = -prob[:, target["labels"]]
        cost_prompt = torch.cdist(prompts.flatten(1).float(), target["prompts"].flatten(1).float())
        return self.cost_class * cost_class + self.cost_prompt * cost_prompt

    @torch.no_grad()
    def forward(
        self, outputs: Dict[str, Tensor], targets: List[Dict[str, Tensor]]
    ) -> List[Tuple[Tensor, Tensor]]:
        """
        Args:
            outputs: "pred_logits" (B, S, C+1) and "pred_prompts" (B, S, T, D).
            targets: per image, "labels" (M,) int64 and "prompts" (M, T, D) teacher prompts.
        Returns:
            per image, (query indices, target indices): int64 tensors of equal length
            min(S, M), sorted by query index.
        """
        indices = []
        for b, target in enumerate(targets):
            if target["labels"].numel() == 0:
                empty = torch.empty(0, dtype=torch.int64)
                indices.append((empty, empty))
                continue
            cost = self.cost_matrix(outputs["pred_logits"][b], outputs["pred_prompts"][b], target)
            rows, cols = linear_sum_assignment(cost.cpu().numpy())
            indices.append(
                (torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64))
            )
        return indices

    def __repr__(self):
        return f"HungarianMatcher(cost_class={self.cost_class}, cost_prompt={self.cost_prompt})"
