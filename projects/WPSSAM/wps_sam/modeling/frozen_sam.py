"""The frozen foundation model: everything WPS-SAM and its baselines do with SAM, in one module.

:class:`FrozenFoundation` is the interface every meta-architecture holds by composition
(``self.sam = build_frozen_foundation(cfg)``): bring inputs into the model's frame
(:meth:`~FrozenFoundation.resize_inputs`, :meth:`~FrozenFoundation.preprocess`), encode them or
take their cached embedding (:meth:`~FrozenFoundation.image_embeddings`), turn weak labels into
prompt tokens (:meth:`~FrozenFoundation.teacher`, the distillation targets) and decode prompt tokens
into mask logits at the original image size (:meth:`~FrozenFoundation.decode`). Its weights are
frozen, it stays in eval mode, and :func:`register_frozen_checkpoint_rules` keeps them out of the
owner's checkpoints. :class:`FrozenSAM` implements it with ``segment_anything``'s SAM; a second
foundation (SAM 2.1) is a second implementation, chosen in :func:`build_frozen_foundation`.
"""

import abc
import math
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from detectron2.structures import Instances
from segment_anything.modeling import Sam
from segment_anything.utils.transforms import ResizeLongestSide
from torch import Tensor, nn
from torch.nn import functional as F

from .sam_builder import build_sam_from_cfg
from .teacher import PromptEncoderTeacher

__all__ = [
    "FrozenFoundation",
    "FrozenSAM",
    "build_frozen_foundation",
    "register_frozen_checkpoint_rules",
]


class FrozenFoundation(nn.Module, metaclass=abc.ABCMeta):
    """A frozen promptable segmentation model, as the meta-architectures use it.

    Frames: an input "image" is (3, h', w') in the model's frame (``resize_inputs`` brings other
    sizes there), "height" x "width" is the original size at which masks are returned. Prompts
    (boxes xyxy, points xy) are in the model's frame.

    Implementations set ``image_size`` (side of the square input), ``embedding_shape``
    ((C, E, E) of one image embedding), ``num_prompt_tokens`` (tokens per teacher prompt) and
    ``prompt_embed_dim``, and hold their frozen modules as children (their parameters are frozen
    here, and kept out of checkpoints by :func:`register_frozen_checkpoint_rules`).
    """

    image_size: int
    embedding_shape: Tuple[int, int, int]
    num_prompt_tokens: int
    prompt_embed_dim: int

    def __init__(self, save_frozen: bool = False):
        super().__init__()
        self.save_frozen = save_frozen  # keep the frozen weights in the owner's state_dict()

    def freeze(self) -> None:
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):
        """Always eval mode: the foundation is frozen."""
        return super().train(False)

    @property
    def device(self) -> torch.device:
        return next(self.buffers()).device

    @abc.abstractmethod
    def input_size(self, x: Dict) -> Tuple[int, int]:
        """(h', w') of the input's resized, unpadded image inside the model's frame."""

    @abc.abstractmethod
    def resize_inputs(self, batched_inputs: List[Dict]) -> List[Dict]:
        """The inputs with every "image" (and its ground truth) in the model's frame."""

    @abc.abstractmethod
    def preprocess(self, image: Tensor) -> Tensor:
        """(3, h', w') image in the model's frame -> the encoder's normalised input."""

    @abc.abstractmethod
    def encode(self, images: Tensor) -> Tensor:
        """(B, 3, S, S) preprocessed images -> (B, *embedding_shape) embeddings (float32)."""

    @abc.abstractmethod
    def teacher(self, supervision: str) -> PromptEncoderTeacher:
        """The frozen prompt encoder applied to weak labels of kind ``supervision``."""

    @abc.abstractmethod
    def decode(self, embedding: Tensor, tokens: Tensor, input_size, original_size) -> Tensor:
        """(K, T, D) prompt tokens on one (*embedding_shape) embedding -> (K, H, W) mask logits
        at ``original_size``."""

    @torch.no_grad()
    def decode_input(self, embedding: Tensor, tokens: Tensor, x: Dict) -> Tensor:
        """:meth:`decode` for one model input ``x``: (K, H, W) mask logits at its "height" x
        "width" (default: its frame size), and (0, H, W) when there is no prompt."""
        size = self.input_size(x)
        height, width = x.get("height", size[0]), x.get("width", size[1])
        if not len(tokens):
            return embedding.new_zeros((0, height, width))
        return self.decode(embedding, tokens, size, (height, width))

    @torch.no_grad()
    def image_embeddings(
        self, batched_inputs: List[Dict], image_fn: Optional[Callable[[Dict], Tensor]] = None
    ) -> Tensor:
        """(B, *embedding_shape): the inputs' "image_embedding" (the embedding cache) where given,
        else the encoder's output on ``image_fn(x)`` (default: ``preprocess(x["image"])``), all
        images to encode in one call."""
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
            image_fn = image_fn or (lambda x: self.preprocess(x["image"]))
            images = torch.stack([image_fn(batched_inputs[i]) for i in to_encode])
            for i, emb in zip(to_encode, self.encode(images)):
                embeddings[i] = emb
        return torch.stack(embeddings)


class FrozenSAM(FrozenFoundation):
    """:class:`FrozenFoundation` with ``segment_anything``'s SAM.

    Holds SAM's three modules under SAM's own names (``image_encoder``, ``prompt_encoder``,
    ``mask_decoder``, so the owner's keys stay ``sam.image_encoder.*``) and SAM's pixel
    normalisation; resizing is SAM's ``ResizeLongestSide`` and normalisation + padding is SAM's own
    ``Sam.preprocess``, run on this module (it reads only ``pixel_mean``, ``pixel_std`` and
    ``image_encoder.img_size``, which this module holds under the same names).
    """

    num_prompt_tokens = 2  # a box is two corner tokens; a point gets SAM's padding token

    def __init__(
        self,
        sam: Sam,
        *,
        encoder_autocast: str = "none",
        mask_upsample: str = "once",
        save_frozen: bool = False,
    ):
        """
        Args:
            sam: a ``segment_anything`` Sam (weights loaded); its modules are frozen here.
            encoder_autocast: "none" (float32) or "bf16": the image encoder under bfloat16
                autocast on the model's device (CPU or CUDA); embeddings are returned as float32.
            mask_upsample: "sam" (SAM's postprocess_masks, two resizes) or "once" (one resize of
                the valid low-resolution crop straight to the original size).
            save_frozen: keep SAM's weights in the owner's ``state_dict()``.
        """
        super().__init__(save_frozen)
        self.image_encoder = sam.image_encoder
        self.prompt_encoder = sam.prompt_encoder
        self.mask_decoder = sam.mask_decoder
        self.register_buffer("pixel_mean", sam.pixel_mean.clone(), False)
        self.register_buffer("pixel_std", sam.pixel_std.clone(), False)
        self.encoder_autocast = encoder_autocast
        self.mask_upsample = mask_upsample
        self.image_size = sam.image_encoder.img_size
        self.prompt_embed_dim = self.prompt_encoder.embed_dim
        self.embedding_shape = (self.prompt_embed_dim, *self.prompt_encoder.image_embedding_size)
        self.resize = ResizeLongestSide(self.image_size)
        self.freeze()

    @property
    def position_encoding(self) -> nn.Module:
        """SAM's frozen random-Fourier encoding of image coordinates (the basis of its prompts)."""
        return self.prompt_encoder.pe_layer

    # ---------------------------------------------------------------------------------------------
    # Frames and encoding
    # ---------------------------------------------------------------------------------------------
    def frame_size(self, height: int, width: int) -> Tuple[int, int]:
        """(h', w') of an image of size (height, width) resized into SAM's frame."""
        return ResizeLongestSide.get_preprocess_shape(height, width, self.image_size)

    def input_size(self, x: Dict) -> Tuple[int, int]:
        if "image" in x:
            return tuple(x["image"].shape[-2:])
        return self.frame_size(x["height"], x["width"])

    def resize_image(self, image: Tensor) -> Tensor:
        """(3, h, w) float image -> (3, h', w') with SAM's ResizeLongestSide."""
        return self.resize.apply_image_torch(image[None])[0]

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
            image = self.resize_image(x["image"].to(self.device).float())
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
        return Sam.preprocess(self, image.to(self.device).float())

    @torch.no_grad()
    def encode(self, images: Tensor) -> Tensor:
        if self.encoder_autocast == "bf16":
            with torch.autocast(images.device.type, dtype=torch.bfloat16):
                return self.image_encoder(images).float()
        return self.image_encoder(images)

    # ---------------------------------------------------------------------------------------------
    # Prompts and masks
    # ---------------------------------------------------------------------------------------------
    def teacher(self, supervision: str) -> PromptEncoderTeacher:
        return PromptEncoderTeacher(self.prompt_encoder, supervision)

    def boxes_to_frame(self, boxes: Tensor, original_size: Sequence[int]) -> Tensor:
        """(K, 4) xyxy boxes in the original image -> SAM's frame (ResizeLongestSide)."""
        return self.resize.apply_boxes_torch(boxes, tuple(original_size))

    @torch.no_grad()
    def decode(self, embedding: Tensor, tokens: Tensor, input_size, original_size) -> Tensor:
        """Frozen mask decoder on K prompts of one image, in one batched call.

        Returns (K, H, W) mask logits at the original size (see ``mask_upsample``).
        """
        pe = self.prompt_encoder
        side = embedding.shape[-1]
        dense = pe.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(tokens.shape[0], -1, side, side)
        low_res, _ = self.mask_decoder(
            image_embeddings=embedding[None],
            image_pe=pe.get_dense_pe(),
            sparse_prompt_embeddings=tokens,
            dense_prompt_embeddings=dense,
            multimask_output=False,
        )
        if self.mask_upsample == "sam":
            return self.postprocess_masks(low_res, tuple(input_size), tuple(original_size))[:, 0]
        return self.upsample_once(low_res[:, 0], input_size, original_size)

    def postprocess_masks(self, masks: Tensor, input_size, original_size) -> Tensor:
        """SAM's own ``Sam.postprocess_masks`` (to the square frame, crop, to the original size)."""
        return Sam.postprocess_masks(self, masks, input_size, original_size)

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


def build_frozen_foundation(cfg) -> FrozenFoundation:
    """The frozen foundation of ``cfg.MODEL.SAM`` (weights from ``MODEL.SAM.CHECKPOINT``)."""
    s = cfg.MODEL.SAM
    return FrozenSAM(
        build_sam_from_cfg(cfg),
        encoder_autocast=s.ENCODER_AUTOCAST,
        mask_upsample=s.MASK_UPSAMPLE,
        save_frozen=s.SAVE_FROZEN_WEIGHTS,
    )


# -------------------------------------------------------------------------------------------------
# Checkpoint rules: frozen weights are not saved; they always come from MODEL.SAM.CHECKPOINT
# -------------------------------------------------------------------------------------------------
def _frozen_prefixes(owner: nn.Module, prefix: str = "") -> Tuple[str, ...]:
    """State-dict prefixes of every path to a frozen foundation's modules inside ``owner`` (a
    detector backbone sharing SAM's image encoder is one more path to the same weights)."""
    frozen = set()
    for module in owner.modules():
        if isinstance(module, FrozenFoundation):
            frozen.update(id(m) for m in module.children())
    paths = [
        name
        for name, m in owner.named_modules(remove_duplicate=False)
        if isinstance(m, FrozenFoundation) or (id(m) in frozen and name)
    ]
    return tuple(prefix + name + "." for name in paths)


def _foundation(owner: nn.Module) -> FrozenFoundation:
    return next(m for m in owner.modules() if isinstance(m, FrozenFoundation))


def _drop_frozen_keys(owner, state_dict, prefix, local_metadata):
    """state_dict post-hook: leave the frozen foundation's weights out of saved checkpoints."""
    if _foundation(owner).save_frozen:
        return
    frozen = _frozen_prefixes(owner, prefix)
    for key in [k for k in state_dict if k.startswith(frozen)]:
        del state_dict[key]


def register_frozen_checkpoint_rules(owner: nn.Module, check_trainable: Optional[str] = None):
    """The checkpoint rules of a model holding a :class:`FrozenFoundation` (docs/DESIGN.md).

    ``owner.state_dict()`` leaves the frozen weights out (unless ``MODEL.SAM.SAVE_FROZEN_WEIGHTS``)
    and ``owner.load_state_dict`` does not report them missing. With ``check_trainable`` (the
    owner's name and config section, e.g. ``("WPS-SAM", "MODEL.WPS_SAM")``), a checkpoint lacking
    trainable weights is refused: the model would silently keep random weights there.
    """

    def ignore_missing_frozen_keys(module, incompatible_keys):
        missing = incompatible_keys.missing_keys
        missing[:] = [k for k in missing if not k.startswith(_frozen_prefixes(module))]
        if check_trainable:
            _refuse_lost_trainable_weights(module, incompatible_keys, *check_trainable)

    owner.register_state_dict_post_hook(_drop_frozen_keys)
    owner.register_load_state_dict_post_hook(ignore_missing_frozen_keys)


def _refuse_lost_trainable_weights(module, incompatible_keys, name: str, section: str) -> None:
    missing = incompatible_keys.missing_keys
    trainable = {n for n, p in module.named_parameters() if p.requires_grad}
    lost = [k for k in missing if k in trainable]
    if not lost:
        return
    unexpected = incompatible_keys.unexpected_keys
    if len(lost) == len(trainable) and any(k.startswith("image_encoder.") for k in unexpected):
        what = (
            f"it is a SAM state dict, not a {name} checkpoint: pass it as "
            "MODEL.SAM.CHECKPOINT, and as MODEL.WEIGHTS a model_*.pth written by "
            "tools/train_net.py"
        )
    elif len(lost) == len(trainable):
        what = f"it holds none of them: it is not a {name} checkpoint"
    else:
        what = (
            f"it was trained with another {section} config (sizes differ, see the "
            "checkpointer's 'Skip loading parameter' warnings): use that config"
        )
    raise RuntimeError(
        f"The checkpoint being loaded (MODEL.WEIGHTS, or the last checkpoint of OUTPUT_DIR "
        f"with --resume) lacks {len(lost)} of the {len(trainable)} trainable weights of "
        f"this {name} (first: {lost[0]}); {what}."
    )
