"""Det-SAM (paper Sec. 3.1, Fig. 3, Table 4): a part detector's boxes prompt the frozen SAM.

The detector is detectron2's own meta-architecture (Faster R-CNN: ``GeneralizedRCNN``), built from
the same config with detectron2's keys; it is the only part that trains. At inference its
detections above ``MODEL.DET_SAM.SCORE_THRESHOLD`` become box prompts of the frozen SAM, whose
masks are merged into the outputs of WPS-SAM by the same rule
(:func:`~wps_sam.modeling.mask_merge.merge_part_masks`) and scored by the same evaluators.
"""

import contextlib
import logging
import os
from typing import Dict, List, Optional

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.structures import Instances
from torch import Tensor, nn

from .config_checks import check_det_sam_config
from .modeling.frozen_sam import (
    FrozenFoundation,
    build_frozen_foundation,
    register_frozen_checkpoint_rules,
)
from .modeling.mask_merge import part_segmentation_result
from .modeling.sam_encoder_backbone import SAMEncoderBackbone

__all__ = ["DetSAM", "load_detector_weights"]

logger = logging.getLogger(__name__)


def load_detector_weights(detector: nn.Module, path: str) -> None:
    """Load a detectron2 checkpoint (.pth / .pkl, model zoo or ImageNet backbone weights) into the
    detector alone, with detectron2's name matching. A DetSAM checkpoint ("detector.*" keys) also
    works: its prefix is matched by the same heuristics for .pkl, and stripped here for .pth."""
    if "://" not in path and not os.path.isfile(path):
        raise FileNotFoundError(
            f"Detector weights not found: {path!r} (MODEL.DET_SAM.DETECTOR_WEIGHTS). Train the "
            "detector with tools/train_net.py on a Det-SAM config (its "
            "OUTPUT_DIR/model_final.pth), or point the key at a detectron2 detector checkpoint; "
            "leave it empty for random init."
        )
    if path.endswith(".pth") and "://" not in path:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        state = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else ckpt
        if isinstance(state, dict) and state and all(k.startswith("detector.") for k in state):
            # A DetSAM checkpoint: load it into a wrapper whose only child is the detector, so
            # that the "detector." prefix matches (detectron2's checkpointer, public API).
            holder = nn.Module()
            holder.detector = detector
            DetectionCheckpointer(holder).load(path, checkpointables=[])
            return
    DetectionCheckpointer(detector).load(path, checkpointables=[])


@META_ARCH_REGISTRY.register()
class DetSAM(nn.Module):
    """``masks = SAM(image, boxes=detector(image))``: Det-SAM with a detectron2 detector.

    Training: the detector's own losses (SAM is frozen and not run). Inference: one batched SAM
    mask-decoder call per image on the detections scoring above ``score_threshold``.
    Checkpoints hold the detector only ("detector.*"), SAM's weights come from
    ``MODEL.SAM.CHECKPOINT`` (``MODEL.SAM.SAVE_FROZEN_WEIGHTS`` stores them too).
    """

    @configurable
    def __init__(
        self,
        *,
        detector: nn.Module,
        sam: FrozenFoundation,
        num_classes: int,
        input_format: str = "RGB",
        score_threshold: float = 0.5,
        mask_threshold: float = 0.0,
        output_mask_probs: bool = False,
    ):
        """
        Args:
            detector: a detectron2 detector (e.g. ``GeneralizedRCNN``): in training mode
                ``detector(batched_inputs)`` returns its losses, in eval mode a list of
                {"instances": Instances} at each input's "height" x "width".
            sam: the frozen foundation (weights loaded; MODEL.SAM.ENCODER_AUTOCAST and
                MODEL.SAM.MASK_UPSAMPLE are its own).
            num_classes: C part classes (the detector's classes); "sem_seg" has C + 1 channels.
            input_format: channel order of the inputs' "image" ("RGB" or "BGR"); SAM takes RGB.
            score_threshold: detections scoring above this become SAM box prompts.
            mask_threshold: SAM mask-logit threshold.
            output_mask_probs: also output ``instances.pred_mask_probs`` (the authors' metrics).
        """
        super().__init__()
        self.output_mask_probs = output_mask_probs
        self.detector = detector
        self.sam = sam
        backbone = getattr(detector, "backbone", None)
        self.shares_encoder = isinstance(backbone, SAMEncoderBackbone)
        if self.shares_encoder:
            # One frozen encoder for the detector's features and SAM's masks.
            backbone.sam_encoder = self.sam.image_encoder
        self.box_teacher = sam.teacher("box")
        self.num_classes = num_classes
        self.input_format = input_format
        self.score_threshold = score_threshold
        self.mask_threshold = mask_threshold
        register_frozen_checkpoint_rules(self)

    @classmethod
    def from_config(cls, cfg):
        check_det_sam_config(cfg)
        d = cfg.MODEL.DET_SAM
        detector = META_ARCH_REGISTRY.get(d.DETECTOR_META_ARCHITECTURE)(cfg)
        if d.DETECTOR_WEIGHTS:
            load_detector_weights(detector, d.DETECTOR_WEIGHTS)
        return {
            "detector": detector,
            "sam": build_frozen_foundation(cfg),
            "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            "input_format": cfg.INPUT.FORMAT,
            "score_threshold": d.SCORE_THRESHOLD,
            "mask_threshold": cfg.MODEL.SAM.MASK_THRESHOLD,
            "output_mask_probs": cfg.TEST.AUTHORS_METRICS,
        }

    @property
    def device(self) -> torch.device:
        return self.sam.device

    # ---------------------------------------------------------------------------------------------
    # SAM's view of the detector's inputs
    # ---------------------------------------------------------------------------------------------
    def sam_input_size(self, height: int, width: int):
        """(h', w') of an image of original size (height, width) inside SAM's square frame."""
        return self.sam.frame_size(height, width)

    def sam_image(self, x: Dict) -> Tensor:
        """(3, S, S) normalised, zero-padded RGB input of SAM for one input dict."""
        image = x["image"].to(self.device).float()
        if self.input_format == "BGR":
            image = image.flip(0)
        if tuple(image.shape[-2:]) != self.sam_input_size(*self.original_size(x)):
            image = self.sam.resize_image(image)
        return self.sam.preprocess(image)

    @staticmethod
    def original_size(x: Dict):
        return x.get("height", x["image"].shape[-2]), x.get("width", x["image"].shape[-1])

    def image_embeddings(self, batched_inputs: List[Dict]) -> Tensor:
        """(B, 256, E, E): the inputs' "image_embedding" (embedding cache) where given, else the
        frozen encoder's output on SAM's view of "image"."""
        return self.sam.image_embeddings(batched_inputs, image_fn=self.sam_image)

    def _in_sam_frame(self, batched_inputs: List[Dict]) -> bool:
        """Whether every detector input "image" is already SAM's resized view of its image."""
        return all(
            tuple(x["image"].shape[-2:]) == self.sam_input_size(*self.original_size(x))
            for x in batched_inputs
        )

    def _shared_encoder(self, batched_inputs: List[Dict], embeddings: Optional[Tensor]):
        """Context in which the SAM-encoder backbone reuses ``embeddings`` (computed or cached)
        instead of encoding the same images again; a no-op for other backbones."""
        if not self.shares_encoder or embeddings is None or not self._in_sam_frame(batched_inputs):
            return contextlib.nullcontext()
        return self.detector.backbone.precomputed_embeddings(embeddings)

    # ---------------------------------------------------------------------------------------------
    # Forward
    # ---------------------------------------------------------------------------------------------
    def forward(self, batched_inputs: List[Dict]):
        """
        Args:
            batched_inputs: list of dicts, one per image, in detectron2's format:
                "image": (3, h', w') uint8 in INPUT.FORMAT, at the detector's input scale
                    (``DatasetMapper`` / ``DefaultPredictor`` resize it),
                "height", "width": original image size (outputs are at this size),
                "instances" (training): gt_boxes (at the "image" scale), gt_classes,
                "image_embedding" (optional): (256, E, E) cached SAM embedding of the image.
        Returns:
            training: the detector's loss dict;
            inference: list of dicts with "sem_seg" ((C+1, H, W) scores, channel C background),
            "instances" (the kept detections: pred_boxes from the detector, pred_masks (K, H, W)
            bool from SAM, pred_classes, scores) and "detector_instances" (every detection, for
            the box AP).
        """
        if self.training:
            embeddings = None
            if self.shares_encoder and all("image_embedding" in x for x in batched_inputs):
                embeddings = self.image_embeddings(batched_inputs)
            with self._shared_encoder(batched_inputs, embeddings):
                return self.detector(batched_inputs)
        return self.inference(batched_inputs)

    @torch.no_grad()
    def decode_boxes(self, embedding: Tensor, boxes: Tensor, original_size) -> Tensor:
        """Frozen SAM on K boxes (xyxy, original frame) of one image in one batched call.

        Returns (K, H, W) mask logits at the original size.
        """
        tokens = self.box_teacher(self.sam.boxes_to_frame(boxes, original_size))
        input_size = self.sam_input_size(*original_size)
        return self.sam.decode(embedding, tokens, input_size, original_size)

    @torch.no_grad()
    def inference(self, batched_inputs: List[Dict]) -> List[Dict]:
        embeddings = self.image_embeddings(batched_inputs)
        with self._shared_encoder(batched_inputs, embeddings):
            detections = self.detector(batched_inputs)
        results = []
        for x, det, embedding in zip(batched_inputs, detections, embeddings):
            height, width = self.original_size(x)
            inst: Instances = det["instances"].to(self.device)
            keep = inst.scores > self.score_threshold
            boxes = inst.pred_boxes.tensor[keep]
            classes, scores = inst.pred_classes[keep], inst.scores[keep]
            if len(boxes):
                logits = self.decode_boxes(embedding, boxes, (height, width))
            else:
                logits = embedding.new_zeros((0, height, width))
            result = part_segmentation_result(
                logits,
                classes,
                scores,
                self.num_classes,
                self.mask_threshold,
                boxes=boxes,
                with_probs=self.output_mask_probs,
            )
            result["detector_instances"] = inst
            results.append(result)
        return results
