"""SAM prompted with the ground-truth parts: the upper bound of the paper's Table 1, and the writer
of the SAM pseudo-labels (paper Table 5, :mod:`wps_sam.data.pseudo_labels`)."""

from typing import Dict, List

import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY
from torch import nn

from .config_checks import check_gt_prompted_sam_config
from .modeling.frozen_sam import (
    FrozenFoundation,
    build_frozen_foundation,
    register_frozen_checkpoint_rules,
)
from .modeling.input_checks import check_batched_inputs
from .modeling.mask_merge import prompted_part_results

__all__ = ["SAMGTPrompted"]


@META_ARCH_REGISTRY.register()
class SAMGTPrompted(nn.Module):
    """``masks = SAM(image, prompts=ground-truth part boxes or box centres)``; nothing trains.

    Every ground-truth part becomes one prompt (class = its class, score 1); the masks are merged
    by the rule of every model of the project (:func:`~.modeling.mask_merge.merge_part_masks`).
    Inputs are WPS-SAM's (``WPSSAMDatasetMapper``), with "instances" at evaluation too.
    """

    @configurable
    def __init__(
        self,
        *,
        sam: FrozenFoundation,
        num_classes: int,
        prompt: str = "box",
        mask_threshold: float = 0.0,
        output_mask_probs: bool = False,
    ):
        """
        Args:
            sam: the frozen foundation (weights loaded).
            num_classes: C part classes; "sem_seg" has C + 1 channels (C = background).
            prompt: "box" (the part boxes) or "point" (the annotated points, else box centres).
            mask_threshold: SAM mask-logit threshold.
            output_mask_probs: also output ``instances.pred_mask_probs`` (the authors' metrics).
        """
        super().__init__()
        self.sam = sam
        self.teacher = sam.teacher(prompt)
        self.num_classes = num_classes
        self.prompt = prompt
        self.mask_threshold = mask_threshold
        self.output_mask_probs = output_mask_probs
        register_frozen_checkpoint_rules(self)

    @classmethod
    def from_config(cls, cfg):
        check_gt_prompted_sam_config(cfg)
        return {
            "sam": build_frozen_foundation(cfg),
            "num_classes": cfg.MODEL.WPS_SAM.NUM_CLASSES,
            "prompt": cfg.MODEL.GT_PROMPTED_SAM.PROMPT,
            "mask_threshold": cfg.MODEL.SAM.MASK_THRESHOLD,
            "output_mask_probs": cfg.TEST.AUTHORS_METRICS,
        }

    @property
    def prompt_source(self) -> str:
        """ "gt_box" or "gt_point" (the name the pseudo-label folders record)."""
        return f"gt_{self.prompt}"

    @property
    def device(self) -> torch.device:
        return self.sam.device

    def forward(self, batched_inputs: List[Dict]) -> List[Dict]:
        """Inference only (nothing trains): outputs as :meth:`WPSSAM.forward`'s."""
        if self.training:
            raise RuntimeError(
                "SAMGTPrompted has nothing to train (SAM prompted with the ground-truth parts): "
                "run it with tools/train_net.py --eval-only."
            )
        check_batched_inputs(
            batched_inputs,
            num_classes=self.num_classes,
            embedding_shape=self.sam.embedding_shape,
            training=False,
        )
        batched_inputs = self.sam.resize_inputs(batched_inputs)
        embeddings = self.sam.image_embeddings(batched_inputs)
        return self.inference(embeddings, batched_inputs)

    def image_embeddings(self, batched_inputs: List[Dict]):
        """The foundation's (kept for the embedding-cache writer, which calls it on the model)."""
        return self.sam.image_embeddings(batched_inputs)

    def gt_prompts(self, x: Dict):
        if "instances" not in x:
            raise KeyError(
                "SAMGTPrompted prompts SAM with ground-truth parts: the inputs need 'instances' "
                "(the dataset must have annotations)."
            )
        inst = x["instances"].to(self.device)
        points = inst.gt_points if inst.has("gt_points") else None
        tokens = self.teacher(inst.gt_boxes.tensor, points)
        scores = torch.ones(len(inst), device=self.device)
        return tokens, inst.gt_classes.long(), scores

    @torch.no_grad()
    def inference(self, embeddings, batched_inputs: List[Dict]) -> List[Dict]:
        prompts = [self.gt_prompts(x) for x in batched_inputs]
        return prompted_part_results(
            self.sam,
            embeddings,
            batched_inputs,
            prompts,
            self.num_classes,
            self.mask_threshold,
            with_probs=self.output_mask_probs,
        )
