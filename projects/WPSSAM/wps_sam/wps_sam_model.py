"""The WPS-SAM meta-architecture: frozen SAM + trainable query prompter (paper Sec. 3)."""

import logging
import math
from typing import Dict, List, Optional, Tuple

import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.structures import Instances
from detectron2.utils.events import get_event_storage
from segment_anything.modeling import Sam
from segment_anything.utils.transforms import ResizeLongestSide
from torch import Tensor, nn
from torch.nn import functional as F
from torchvision.ops import box_convert

from .config_checks import check_wps_sam_config
from .modeling.criterion import SetCriterion, dense_part_assignment
from .modeling.input_checks import check_batched_inputs
from .modeling.mask_merge import merge_part_masks, part_segmentation_result
from .modeling.matcher import HungarianMatcher
from .modeling.prompter import QueryPrompter
from .modeling.sam_builder import build_sam_from_cfg
from .modeling.teacher import PromptEncoderTeacher

__all__ = ["WPSSAM", "PROMPT_SOURCES"]

logger = logging.getLogger(__name__)

PROMPT_SOURCES = ("prompter", "gt_box", "gt_point")
KEEP_RULES = ("argmax", "part_score")
ENCODER_AUTOCASTS = ("none", "bf16")
MASK_UPSAMPLES = ("once", "sam")
DENSE_TARGETS = ("weak_label", "centre")


def _drop_frozen_sam_keys(module, state_dict, prefix, local_metadata):
    """state_dict post-hook: leave SAM's frozen weights out of saved checkpoints."""
    if module.save_frozen_sam:
        return
    for key in [k for k in state_dict if k.startswith(prefix + "sam.")]:
        del state_dict[key]


def _ignore_missing_frozen_sam_keys(module, incompatible_keys):
    """load_state_dict post-hook: a checkpoint without SAM's weights is complete (docs/DESIGN.md).

    A checkpoint that lacks trainable weights of the prompter (detectron2's checkpointer also
    leaves out those whose shape differs) is refused: the model would silently keep random
    weights there.
    """
    missing = incompatible_keys.missing_keys
    missing[:] = [k for k in missing if not k.startswith("sam.")]
    trainable = {n for n, p in module.named_parameters() if p.requires_grad}
    lost = [k for k in missing if k in trainable]
    if lost:
        unexpected = incompatible_keys.unexpected_keys
        if len(lost) == len(trainable) and any(k.startswith("image_encoder.") for k in unexpected):
            what = (
                "it is a SAM state dict, not a WPS-SAM checkpoint: pass it as "
                "MODEL.SAM.CHECKPOINT, and as MODEL.WEIGHTS a model_*.pth written by "
                "tools/train_net.py"
            )
        elif len(lost) == len(trainable):
            what = "it holds none of them: it is not a WPS-SAM checkpoint"
        else:
            what = (
                "it was trained with another MODEL.WPS_SAM config (sizes differ, see the "
                "checkpointer's 'Skip loading parameter' warnings): use that config"
            )
        raise RuntimeError(
            f"The checkpoint being loaded (MODEL.WEIGHTS, or the last checkpoint of OUTPUT_DIR "
            f"with --resume) lacks {len(lost)} of the {len(trainable)} trainable weights of "
            f"this WPS-SAM (first: {lost[0]}); {what}."
        )


@META_ARCH_REGISTRY.register()
class WPSSAM(nn.Module):
    """WPS-SAM: ``masks = SAM.mask_decoder(F, prompter(F))`` with ``F = SAM.image_encoder(I)``.

    SAM (image encoder, prompt encoder, mask decoder) is frozen and kept in eval mode; only the
    prompter trains, distilled from SAM's prompt encoder applied to the part boxes (or points).

    Checkpoints: by default ``state_dict()`` leaves out SAM's frozen weights (``sam.*``), so a
    WPS-SAM checkpoint holds the prompter only (~50 MB instead of ~410 MB for ViT-B) and SAM's
    weights always come from ``MODEL.SAM.CHECKPOINT``. Set ``MODEL.WPS_SAM.SAVE_FROZEN_SAM`` to
    store them too.
    """

    @configurable
    def __init__(
        self,
        *,
        sam: Sam,
        prompter: QueryPrompter,
        criterion: SetCriterion,
        num_classes: int,
        pixel_mean: Tuple[float, float, float],
        pixel_std: Tuple[float, float, float],
        supervision: str = "box",
        prompt_source: str = "prompter",
        score_threshold: float = 0.0,
        keep_rule: str = "argmax",
        dense_target: str = "weak_label",
        mask_threshold: float = 0.0,
        encoder_autocast: str = "none",
        mask_upsample: str = "once",
        save_frozen_sam: bool = False,
        output_mask_probs: bool = False,
    ):
        """
        Args:
            sam: a ``segment_anything`` Sam (its weights already loaded); it is frozen here.
            prompter: the trainable :class:`QueryPrompter`.
            criterion: the :class:`SetCriterion` (holding the matcher).
            num_classes: C part classes; semantic outputs have C + 1 channels (C = background).
            pixel_mean, pixel_std: RGB normalisation of the input images.
            supervision: "box" or "point", the weak label the teacher encodes.
            prompt_source: "prompter" (WPS-SAM) or "gt_box"/"gt_point" (SAM with GT prompts).
            score_threshold: minimum class probability of a kept query.
            keep_rule: "argmax" (the paper: keep a query whose most probable class is a part) or
                "part_score" (DETR's query scoring: keep a query whose best part probability
                exceeds ``score_threshold``, whatever its "no part" probability).
            dense_target: targets of the dense auxiliary loss: "weak_label" (from the supervision's
                own labels, see :func:`dense_part_labels`) or "centre" (point-style: only the cells
                holding a part's point, under box supervision its box centre; the rest unknown).
            mask_threshold: SAM mask-logit threshold.
            encoder_autocast: "none" (float32) or "bf16": the image encoder under bfloat16
                autocast on the model's device (CPU or CUDA); embeddings are returned as float32.
            mask_upsample: "sam" (SAM's postprocess_masks, two resizes) or "once" (one resize of
                the valid low-resolution crop straight to the original size).
            save_frozen_sam: keep SAM's weights in ``state_dict()``.
            output_mask_probs: also output ``instances.pred_mask_probs`` (for the authors' metrics).
        """
        super().__init__()
        if prompt_source not in PROMPT_SOURCES:
            raise ValueError(
                f"MODEL.WPS_SAM.PROMPT_SOURCE must be one of {PROMPT_SOURCES}, "
                f"not {prompt_source!r}"
            )
        self.sam = sam
        for p in self.sam.parameters():
            p.requires_grad_(False)
        self.sam.eval()
        self.prompter = prompter
        if prompter.pos_embed_type == "sam":
            prompter.use_sam_position_encoding(sam.prompt_encoder.pe_layer)
        self.criterion = criterion
        self.teacher = PromptEncoderTeacher(sam.prompt_encoder, supervision)
        self.gt_teachers = {
            "gt_box": PromptEncoderTeacher(sam.prompt_encoder, "box"),
            "gt_point": PromptEncoderTeacher(sam.prompt_encoder, "point"),
        }
        self.num_classes = num_classes
        self.prompt_source = prompt_source
        if keep_rule not in KEEP_RULES:
            raise ValueError(
                f"MODEL.WPS_SAM.TEST.KEEP_RULE must be one of {KEEP_RULES}, not {keep_rule!r}"
            )
        if dense_target not in DENSE_TARGETS:
            raise ValueError(
                f"MODEL.WPS_SAM.DENSE_TARGET must be one of {DENSE_TARGETS}, not {dense_target!r}"
            )
        self.dense_target = dense_target
        self.score_threshold = score_threshold
        self.keep_rule = keep_rule
        self.mask_threshold = mask_threshold
        self.output_mask_probs = output_mask_probs
        if encoder_autocast not in ENCODER_AUTOCASTS:
            raise ValueError(
                f"MODEL.SAM.ENCODER_AUTOCAST must be one of {ENCODER_AUTOCASTS}, "
                f"not {encoder_autocast!r}"
            )
        if mask_upsample not in MASK_UPSAMPLES:
            raise ValueError(
                f"MODEL.WPS_SAM.TEST.MASK_UPSAMPLE must be one of {MASK_UPSAMPLES}, "
                f"not {mask_upsample!r}"
            )
        self.encoder_autocast = encoder_autocast
        self.mask_upsample = mask_upsample
        self.save_frozen_sam = save_frozen_sam
        self.image_size = sam.image_encoder.img_size
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)
        self.register_state_dict_post_hook(_drop_frozen_sam_keys)
        self.register_load_state_dict_post_hook(_ignore_missing_frozen_sam_keys)

    @classmethod
    def from_config(cls, cfg):
        w = cfg.MODEL.WPS_SAM
        check_wps_sam_config(cfg)
        matcher = HungarianMatcher(cost_class=w.CLASS_COST, cost_prompt=w.PROMPT_COST)
        return {
            "sam": build_sam_from_cfg(cfg),
            "prompter": QueryPrompter(cfg),
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
            "pixel_mean": tuple(cfg.MODEL.PIXEL_MEAN),
            "pixel_std": tuple(cfg.MODEL.PIXEL_STD),
            "supervision": w.SUPERVISION,
            "prompt_source": w.PROMPT_SOURCE,
            "score_threshold": w.TEST.SCORE_THRESHOLD,
            "keep_rule": w.TEST.KEEP_RULE,
            "dense_target": w.DENSE_TARGET,
            "mask_threshold": w.TEST.MASK_THRESHOLD,
            "encoder_autocast": cfg.MODEL.SAM.ENCODER_AUTOCAST,
            "mask_upsample": w.TEST.MASK_UPSAMPLE,
            "save_frozen_sam": w.SAVE_FROZEN_SAM,
            "output_mask_probs": cfg.TEST.AUTHORS_METRICS,
        }

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def train(self, mode: bool = True):
        """Put the prompter in ``mode``; SAM always stays in eval mode (it is frozen)."""
        super().train(mode)
        self.sam.eval()
        return self

    # ---------------------------------------------------------------------------------------------
    # Image embeddings
    # ---------------------------------------------------------------------------------------------
    def input_size(self, x: Dict) -> Tuple[int, int]:
        """(h', w') of the resized, unpadded input image inside SAM's square frame."""
        if "image" in x:
            return tuple(x["image"].shape[-2:])
        return ResizeLongestSide.get_preprocess_shape(x["height"], x["width"], self.image_size)

    def resize_inputs(self, batched_inputs: List[Dict]) -> List[Dict]:
        """Bring images whose longest side is not SAM's image size into SAM's frame.

        WPSSAMDatasetMapper already does this; inputs from elsewhere (DefaultPredictor, user code)
        are resized here with SAM's ResizeLongestSide, their ground-truth boxes/points scaled along.
        """
        resized = []
        for x in batched_inputs:
            if "image" not in x or max(x["image"].shape[-2:]) == self.image_size:
                resized.append(x)
                continue
            h, w = x["image"].shape[-2:]
            image = x["image"].to(self.device).float()[None]
            image = ResizeLongestSide(self.image_size).apply_image_torch(image)[0]
            x = {"height": h, "width": w, **x, "image": image}
            if "instances" in x:
                scale = image.shape[-1] / w
                inst = Instances(tuple(image.shape[-2:]), **x["instances"].get_fields())
                inst.gt_boxes = inst.gt_boxes.clone()
                inst.gt_boxes.scale(scale, scale)
                if inst.has("gt_points"):
                    inst.gt_points = inst.gt_points * scale
                x["instances"] = inst
            resized.append(x)
        return resized

    def preprocess(self, image: Tensor) -> Tensor:
        """Normalise a (3, h', w') RGB image and zero-pad it bottom-right to SAM's square size."""
        h, w = image.shape[-2:]
        if max(h, w) > self.image_size:
            raise ValueError(
                f"Input image of size {h}x{w} is larger than SAM's input ({self.image_size}): "
                "resize it with ResizeLongestSide(MODEL.SAM.IMAGE_SIZE) (WPSSAMDatasetMapper does)."
            )
        x = (image.to(self.device).float() - self.pixel_mean) / self.pixel_std
        return F.pad(x, (0, self.image_size - w, 0, self.image_size - h))

    @torch.no_grad()
    def encode_images(self, images: Tensor) -> Tensor:
        """(B, 3, S, S) preprocessed images -> (B, 256, E, E) embeddings of the frozen encoder."""
        if self.encoder_autocast == "bf16":
            with torch.autocast(images.device.type, dtype=torch.bfloat16):
                return self.sam.image_encoder(images).float()
        return self.sam.image_encoder(images)

    def image_embeddings(self, batched_inputs: List[Dict]) -> Tensor:
        """(B, 256, E, E): the inputs' "image_embedding" where given, else the encoder's output."""
        embeddings: List[Optional[Tensor]] = [None] * len(batched_inputs)
        to_encode = []
        for i, x in enumerate(batched_inputs):
            if "image_embedding" in x:
                embeddings[i] = x["image_embedding"].to(self.device).float()
            elif "image" in x:
                to_encode.append(i)
            else:
                raise KeyError("Each input needs an 'image' or an 'image_embedding'")
        if to_encode:
            images = torch.stack([self.preprocess(batched_inputs[i]["image"]) for i in to_encode])
            for i, emb in zip(to_encode, self.encode_images(images)):
                embeddings[i] = emb
        return torch.stack(embeddings)

    # ---------------------------------------------------------------------------------------------
    # Training
    # ---------------------------------------------------------------------------------------------
    def teacher_targets(self, batched_inputs: List[Dict]) -> List[Dict[str, Tensor]]:
        """Per image: "labels" (M,) and "prompts" (M, 2, 256) from SAM's prompt encoder."""
        targets = []
        for x in batched_inputs:
            if "instances" not in x:
                raise KeyError(
                    "Training needs 'instances' with gt_boxes/gt_classes in every input "
                    "(WPSSAMDatasetMapper with is_train=True provides them)"
                )
            inst = x["instances"].to(self.device)
            points = inst.gt_points if inst.has("gt_points") else None
            prompts = self.teacher(inst.gt_boxes.tensor, points)
            target = {"labels": inst.gt_classes.long(), "prompts": prompts}
            if self.criterion.dense_class_weight > 0:
                target.update(self.dense_targets(inst, points))
            targets.append(target)
        return targets

    def dense_targets(self, inst: Instances, points: Optional[Tensor]) -> Dict[str, Tensor]:
        """Targets of the dense auxiliary losses, from the weak label of the supervision only.

        Returns "dense_labels" (M, M) (see :func:`dense_part_labels`) and, for two-stage query
        selection, "dense_boxes" (M, M, 4): the normalised (cx, cy, w, h) box of the part that
        labels each cell, with "dense_box_weights" (M, M, 4) marking the supervised coordinates
        (all four under box supervision, the centre only under point supervision).
        """
        if self.teacher.supervision == "box" and self.dense_target == "weak_label":
            weak = {"boxes": inst.gt_boxes.tensor}
        else:
            # Point-style targets at the annotated points, else (as the point teacher) the centres.
            if self.teacher.supervision == "box" or points is None:
                points = inst.gt_boxes.get_centers()
            weak = {"points": points}
        labels, index = dense_part_assignment(
            inst.gt_classes, self.prompter.memory_size, self.image_size, self.num_classes, **weak
        )
        targets = {"dense_labels": labels}
        if self.criterion.dense_box_weight > 0:
            if self.teacher.supervision == "box":
                boxes = box_convert(inst.gt_boxes.tensor.float(), "xyxy", "cxcywh")
                coords = torch.ones(4, device=boxes.device)
            else:  # point supervision: ``points`` was resolved above
                boxes = F.pad(points.float(), (0, 2))
                coords = torch.tensor([1.0, 1.0, 0.0, 0.0], device=boxes.device)
            boxes = boxes / self.image_size
            found = index >= 0
            dense = boxes.new_zeros((*index.shape, 4))
            dense[found] = boxes[index[found]]
            targets["dense_boxes"] = dense
            targets["dense_box_weights"] = found[..., None].float() * coords
        return targets

    def run_prompter(self, embeddings: Tensor) -> Dict[str, Tensor]:
        """The prompter's outputs (see :meth:`QueryPrompter.forward`), each with "pred_prompts".

        An "anchored_box" prompter predicts boxes; they become prompt tokens here through SAM's
        frozen prompt encoder (the teacher's own encoding, with autograd), in the weak label's
        form: both corners for box supervision, the centre as a positive point for points.
        """
        outputs = self.prompter(embeddings)
        for out in [outputs, *outputs.get("aux_outputs", [])]:
            if "pred_boxes" in out:
                out["pred_prompts"] = self.prompts_from_boxes(out["pred_boxes"])
        return outputs

    def prompts_from_boxes(self, boxes: Tensor) -> Tensor:
        """(B, S, 4) normalised (cx, cy, w, h) boxes -> (B, S, 2, D) prompt tokens."""
        b, s = boxes.shape[:2]
        xyxy = box_convert(boxes.flatten(0, 1), "cxcywh", "xyxy") * self.image_size
        tokens = self.teacher.encode(xyxy)
        return tokens.view(b, s, *tokens.shape[1:])

    def losses(self, embeddings: Tensor, batched_inputs: List[Dict]) -> Dict[str, Tensor]:
        targets = self.teacher_targets(batched_inputs)
        outputs = self.run_prompter(embeddings)
        losses, _ = self.criterion(outputs, targets)
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
        return losses

    def forward(self, batched_inputs: List[Dict]):
        """
        Args:
            batched_inputs: list of dicts, one per image, with
                "image": (3, h', w') uint8 RGB resized so the longest side is SAM's image size,
                "image_embedding" (optional): (256, E, E) precomputed embedding; the encoder is
                    then skipped for that image ("image" may be absent),
                "height", "width": original image size (outputs are at this size),
                "instances" (training, and the gt_* prompt sources): gt_boxes (xyxy, resized
                    frame), gt_classes, optional gt_points (M, 2).
        Returns:
            training: dict of losses {"loss_cls", "loss_prompt"} (and the auxiliary ones);
            inference: list of dicts with "sem_seg" ((C+1, H, W) scores, argmax = label map,
                channel C = background) and "instances" (pred_masks (N, H, W) bool, pred_classes,
                scores, pred_boxes).
        """
        pe = self.sam.prompt_encoder
        check_batched_inputs(
            batched_inputs,
            num_classes=self.num_classes,
            embedding_shape=(pe.embed_dim, *pe.image_embedding_size),
            training=self.training,
        )
        batched_inputs = self.resize_inputs(batched_inputs)
        embeddings = self.image_embeddings(batched_inputs)
        if self.training:
            return self.losses(embeddings, batched_inputs)
        return self.inference(embeddings, batched_inputs)

    # ---------------------------------------------------------------------------------------------
    # Inference
    # ---------------------------------------------------------------------------------------------
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

    def gt_prompts(self, x: Dict):
        if "instances" not in x:
            raise KeyError(
                f"MODEL.WPS_SAM.PROMPT_SOURCE={self.prompt_source!r} prompts SAM with ground-truth "
                "parts: the inputs need 'instances' (the dataset must have annotations)."
            )
        inst = x["instances"].to(self.device)
        points = inst.gt_points if inst.has("gt_points") else None
        tokens = self.gt_teachers[self.prompt_source](inst.gt_boxes.tensor, points)
        scores = torch.ones(len(inst), device=self.device)
        return tokens, inst.gt_classes.long(), scores

    @torch.no_grad()
    def decode_masks(self, embedding: Tensor, tokens: Tensor, input_size, original_size) -> Tensor:
        """Frozen mask decoder on K prompts of one image, in one batched call.

        Returns (K, H, W) mask logits at the original size (see ``mask_upsample``).
        """
        pe = self.sam.prompt_encoder
        side = embedding.shape[-1]
        dense = pe.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(tokens.shape[0], -1, side, side)
        low_res, _ = self.sam.mask_decoder(
            image_embeddings=embedding[None],
            image_pe=pe.get_dense_pe(),
            sparse_prompt_embeddings=tokens,
            dense_prompt_embeddings=dense,
            multimask_output=False,
        )
        if self.mask_upsample == "sam":
            return self.sam.postprocess_masks(low_res, tuple(input_size), tuple(original_size))[
                :, 0
            ]
        return self.upsample_once(low_res[:, 0], input_size, original_size)

    def upsample_once(self, low_res: Tensor, input_size, original_size) -> Tensor:
        """(K, L, L) low-res logits of the square frame -> (K, H, W) in one bilinear resize.

        The valid (h', w') region of the S x S frame is (h' L/S, w' L/S) low-res cells (not an
        integer in general); resizing that crop with ``scale_factor = H / (h' L/S)`` (and not
        recomputing it from the rounded crop) maps output pixel j to the same low-res coordinate
        as SAM's resize-crop-resize, so the masks agree with SAM's up to interpolation smoothing.
        """
        (h, w), (height, width) = input_size, original_size
        ratio = low_res.shape[-1] / self.image_size
        valid_h, valid_w = h * ratio, w * ratio
        # One cell beyond the valid region when there is one: the output then has at least
        # (height, width) pixels whatever the float rounding of floor(crop * scale).
        side = low_res.shape[-1]
        crop_h, crop_w = min(side, math.ceil(valid_h) + 1), min(side, math.ceil(valid_w) + 1)
        out = F.interpolate(
            low_res[:, None, :crop_h, :crop_w],
            scale_factor=(height / valid_h, width / valid_w),
            mode="bilinear",
            align_corners=False,
            recompute_scale_factor=False,
        )[:, 0, :height, :width]
        short_h, short_w = height - out.shape[-2], width - out.shape[-1]
        if short_h or short_w:  # the full frame, rounded down by one pixel
            out = F.pad(out[:, None], (0, short_w, 0, short_h), mode="replicate")[:, 0]
        return out

    def semantic_map(self, mask_logits: Tensor, classes: Tensor, scores: Tensor) -> Tensor:
        """Merge K part masks into (C+1, H, W) scores with the project's merge rule (see
        :func:`~wps_sam.modeling.mask_merge.merge_part_masks`: overlaps go to the most confident
        query; background exactly where no kept query's mask covers the pixel)."""
        return merge_part_masks(mask_logits, classes, scores, self.num_classes, self.mask_threshold)

    @torch.no_grad()
    def inference(self, embeddings: Tensor, batched_inputs: List[Dict]) -> List[Dict]:
        outputs = self.run_prompter(embeddings) if self.prompt_source == "prompter" else None
        results = []
        for i, x in enumerate(batched_inputs):
            if outputs is not None:
                tokens, classes, scores = self.select_prompts(outputs, i)
            else:
                tokens, classes, scores = self.gt_prompts(x)
            height = x.get("height", self.input_size(x)[0])
            width = x.get("width", self.input_size(x)[1])
            if len(tokens):
                logits = self.decode_masks(
                    embeddings[i], tokens, self.input_size(x), (height, width)
                )
            else:
                logits = embeddings.new_zeros((0, height, width))
            results.append(
                part_segmentation_result(
                    logits,
                    classes,
                    scores,
                    self.num_classes,
                    self.mask_threshold,
                    with_probs=self.output_mask_probs,
                )
            )
        return results
