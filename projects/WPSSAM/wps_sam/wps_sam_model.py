"""The WPS-SAM meta-architecture: frozen SAM + trainable query prompter (paper Sec. 3)."""

from typing import Dict, List

import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY
from torch import Tensor, nn

from .config_checks import check_wps_sam_config
from .modeling.criterion import SetCriterion
from .modeling.frozen_sam import (
    FrozenFoundation,
    build_frozen_foundation,
    register_frozen_checkpoint_rules,
)
from .modeling.input_checks import check_batched_inputs
from .modeling.mask_merge import merge_part_masks, prompted_part_results
from .modeling.matcher import HungarianMatcher
from .modeling.prompter import QueryPrompter
from .modeling.targets import WeakLabelTargets

__all__ = ["WPSSAM"]


@META_ARCH_REGISTRY.register()
class WPSSAM(nn.Module):
    """WPS-SAM: ``masks = SAM.mask_decoder(F, prompter(F))`` with ``F = SAM.image_encoder(I)``.

    The frozen foundation (``self.sam``, a :class:`~.modeling.frozen_sam.FrozenFoundation`) encodes
    the images, is the teacher (its prompt encoder applied to the part boxes or points) and decodes
    the masks; only the prompter trains. Checkpoints hold the prompter only (docs/DESIGN.md).
    """

    @configurable
    def __init__(
        self,
        *,
        sam: FrozenFoundation,
        prompter: QueryPrompter,
        criterion: SetCriterion,
        num_classes: int,
        supervision: str = "box",
        score_threshold: float = 0.0,
        keep_rule: str = "argmax",
        mask_threshold: float = 0.0,
        output_mask_probs: bool = False,
    ):
        """
        Args:
            sam: the frozen foundation (weights loaded).
            prompter: the trainable :class:`QueryPrompter`.
            criterion: the :class:`SetCriterion` (holding the matcher).
            num_classes: C part classes; semantic outputs have C + 1 channels (C = background).
            supervision: "box" or "point", the weak label the teacher encodes.
            score_threshold: minimum score of a kept query.
            keep_rule: "argmax" (the paper: keep a query whose most probable class is a part) or
                "part_score" (DETR's query scoring: keep a query whose best part probability
                exceeds ``score_threshold``, whatever its "no part" probability).
            mask_threshold: SAM mask-logit threshold.
            output_mask_probs: also output ``instances.pred_mask_probs`` (for the authors' metrics).
        """
        super().__init__()
        self.sam = sam
        self.prompter = prompter
        if prompter.pos_embed_type == "sam":
            prompter.use_sam_position_encoding(sam.position_encoding)
        self.criterion = criterion
        self.teacher = sam.teacher(supervision)
        self.targets = WeakLabelTargets(
            self.teacher,
            num_classes,
            prompter.memory_size,
            sam.image_size,
            dense_labels=criterion.dense_class_weight > 0,
            dense_boxes=criterion.dense_box_weight > 0,
        )
        self.num_classes = num_classes
        self.score_threshold = score_threshold
        self.keep_rule = keep_rule
        self.mask_threshold = mask_threshold
        self.output_mask_probs = output_mask_probs
        register_frozen_checkpoint_rules(self, check_trainable=("WPS-SAM", "MODEL.WPS_SAM"))

    @classmethod
    def from_config(cls, cfg):
        check_wps_sam_config(cfg)
        w = cfg.MODEL.WPS_SAM
        matcher = HungarianMatcher(cost_class=w.CLASS_COST, cost_prompt=w.PROMPT_COST)
        sam = build_frozen_foundation(cfg)  # before the prompter: the order of the init draws
        return {
            "sam": sam,
            "prompter": QueryPrompter(cfg, num_prompt_tokens=sam.num_prompt_tokens),
            "criterion": SetCriterion(
                w.NUM_CLASSES,
                matcher,
                class_weight=w.CLASS_WEIGHT,
                prompt_weight=w.PROMPT_WEIGHT,
                no_object_weight=w.NO_OBJECT_WEIGHT,
                dense_class_weight=w.DENSE_CLASS_WEIGHT,
                dense_box_weight=w.DENSE_BOX_WEIGHT if w.QUERY_SELECTION == "memory" else 0.0,
                prompt_loss_norm=w.PROMPT_LOSS_NORM,
            ),
            "num_classes": w.NUM_CLASSES,
            "supervision": w.SUPERVISION,
            "score_threshold": w.TEST.SCORE_THRESHOLD,
            "keep_rule": w.TEST.KEEP_RULE,
            "mask_threshold": cfg.MODEL.SAM.MASK_THRESHOLD,
            "output_mask_probs": cfg.TEST.AUTHORS_METRICS,
        }

    @property
    def device(self) -> torch.device:
        return self.sam.device

    @property
    def image_size(self) -> int:
        return self.sam.image_size

    def forward(self, batched_inputs: List[Dict]):
        """
        Args:
            batched_inputs: list of dicts, one per image, with
                "image": (3, h', w') uint8 RGB resized so the longest side is SAM's image size,
                "image_embedding" (optional): (256, E, E) precomputed embedding; the encoder is
                    then skipped for that image ("image" may be absent),
                "height", "width": original image size (outputs are at this size),
                "instances" (training): gt_boxes (xyxy, resized frame), gt_classes, optional
                    gt_points (M, 2).
        Returns:
            training: dict of losses {"loss_cls", "loss_prompt"} (and the auxiliary ones);
            inference: list of dicts with "sem_seg" ((C+1, H, W) scores, argmax = label map,
                channel C = background) and "instances" (pred_masks (N, H, W) bool, pred_classes,
                scores, pred_boxes).
        """
        check_batched_inputs(
            batched_inputs,
            num_classes=self.num_classes,
            embedding_shape=self.sam.embedding_shape,
            training=self.training,
        )
        batched_inputs = self.sam.resize_inputs(batched_inputs)
        embeddings = self.sam.image_embeddings(batched_inputs)
        if self.training:
            return self.losses(embeddings, batched_inputs)
        return self.inference(embeddings, batched_inputs)

    def losses(self, embeddings: Tensor, batched_inputs: List[Dict]) -> Dict[str, Tensor]:
        targets = self.prepare_targets(batched_inputs)
        losses, _ = self.criterion(self.run_prompter(embeddings), targets)
        return losses

    def prepare_targets(self, batched_inputs: List[Dict]) -> List[Dict[str, Tensor]]:
        """Per image: the teacher's "labels" and "prompts" (and the dense losses' targets)."""
        return self.targets(batched_inputs, self.device)

    def run_prompter(self, embeddings: Tensor) -> Dict[str, Tensor]:
        """The prompter's outputs (see :meth:`QueryPrompter.forward`), each with "pred_prompts":
        an "anchored_box" prompter's boxes become tokens through the frozen teacher (autograd)."""
        outputs = self.prompter(embeddings)
        for out in [outputs, *outputs.get("aux_outputs", [])]:
            if "pred_boxes" in out:
                out["pred_prompts"] = self.teacher.encode_normalised_boxes(
                    out["pred_boxes"], self.sam.image_size
                )
        return outputs

    def select_prompts(self, outputs: Dict[str, Tensor], index: int):
        """Kept queries of one image: tokens (K, T, D), classes (K,), scores (K,)."""
        probs = outputs["pred_logits"][index].softmax(-1)
        if self.keep_rule == "argmax":
            scores, labels = probs.max(-1)
            keep = (labels != self.num_classes) & (scores > self.score_threshold)
        else:
            scores, labels = probs[:, : self.num_classes].max(-1)
            keep = scores > self.score_threshold
        return outputs["pred_prompts"][index][keep], labels[keep], scores[keep]

    @torch.no_grad()
    def inference(self, embeddings: Tensor, batched_inputs: List[Dict]) -> List[Dict]:
        outputs = self.run_prompter(embeddings)
        prompts = [self.select_prompts(outputs, i) for i in range(len(batched_inputs))]
        return prompted_part_results(
            self.sam,
            embeddings,
            batched_inputs,
            prompts,
            self.num_classes,
            self.mask_threshold,
            with_probs=self.output_mask_probs,
        )

    # The model-level API of the evaluators, the embedding-cache writer and the tools; everything
    # else about SAM is called on the foundation itself (``model.sam``).
    def semantic_map(self, mask_logits: Tensor, classes: Tensor, scores: Tensor) -> Tensor:
        """(C+1, H, W) scores of K part masks (:func:`~.modeling.mask_merge.merge_part_masks`)."""
        return merge_part_masks(mask_logits, classes, scores, self.num_classes, self.mask_threshold)

    def image_embeddings(self, batched_inputs: List[Dict]) -> Tensor:
        return self.sam.image_embeddings(batched_inputs)
