"""The teacher of WPS-SAM: SAM's frozen prompt encoder applied to the weak labels."""

from typing import Optional

import torch
from segment_anything.modeling import PromptEncoder
from torch import Tensor
from torchvision.ops import box_convert

__all__ = ["PromptEncoderTeacher", "SUPERVISIONS"]

SUPERVISIONS = ("box", "point")


class PromptEncoderTeacher:
    """Encodes part boxes or points into SAM sparse prompt tokens, the distillation targets.

    * ``"box"``: a box (xyxy, SAM input frame) becomes SAM's two corner tokens, (M, 2, D).
    * ``"point"``: the part's annotated point if given, else the box centre, as a positive point;
      SAM appends its padding token (it does when no box is given), so the result is (M, 2, D) too.

    The prompt encoder is not copied: this holds a reference to SAM's frozen module.
    """

    def __init__(self, prompt_encoder: PromptEncoder, supervision: str = "box"):
        if supervision not in SUPERVISIONS:
            raise ValueError(
                f"MODEL.WPS_SAM.SUPERVISION must be one of {SUPERVISIONS}, not {supervision!r}"
            )
        self.prompt_encoder = prompt_encoder
        self.supervision = supervision

    @property
    def num_tokens(self) -> int:
        return 2

    @torch.no_grad()
    def __call__(self, boxes: Tensor, points: Optional[Tensor] = None) -> Tensor:
        """
        Args:
            boxes: (M, 4) xyxy part boxes in SAM's input frame (longest side = image size).
            points: optional (M, 2) xy annotated points, used in "point" mode instead of centres.
        Returns:
            (M, 2, D) sparse prompt embeddings.
        """
        return self.encode(boxes, points)

    def encode(self, boxes: Tensor, points: Optional[Tensor] = None) -> Tensor:
        """:meth:`__call__` with autograd: gradients reach ``boxes``/``points`` (the encoder stays
        frozen). The "anchored_box" prompter turns its predicted boxes into tokens with this."""
        dim = self.prompt_encoder.embed_dim
        if boxes.shape[0] == 0:
            return boxes.new_zeros((0, self.num_tokens, dim))
        if self.supervision == "box":
            sparse, _ = self.prompt_encoder(points=None, boxes=boxes.float(), masks=None)
            return sparse
        if points is None:
            points = (boxes[:, :2] + boxes[:, 2:]) / 2
        coords = points.float()[:, None, :]
        labels = torch.ones(coords.shape[:2], dtype=torch.int64, device=coords.device)
        sparse, _ = self.prompt_encoder(points=(coords, labels), boxes=None, masks=None)
        return sparse

    def encode_normalised_boxes(self, boxes: Tensor, frame_size: int) -> Tensor:
        """(B, S, 4) normalised (cx, cy, w, h) boxes -> (B, S, 2, D) prompt tokens, with autograd
        (the "anchored_box" prompter's predicted boxes, in the weak label's form: both corners
        for box supervision, the centre as a positive point for points)."""
        b, s = boxes.shape[:2]
        xyxy = box_convert(boxes.flatten(0, 1), "cxcywh", "xyxy") * frame_size
        tokens = self.encode(xyxy)
        return tokens.view(b, s, *tokens.shape[1:])
