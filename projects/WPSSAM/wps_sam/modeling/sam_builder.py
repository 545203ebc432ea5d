"""Build a Segment Anything model from ``segment_anything``'s modules and load its checkpoint.

The official architectures (``vit_b``, ``vit_l``, ``vit_h``) are reproduced exactly as
``segment_anything.build_sam`` builds them, so their official state dicts load unchanged; a
``custom`` size (for tests, CPU use and the project's self-trained tiny SAM) is described by the
``ENCODER_*`` config keys. Every variant, official or custom, loads its weights through
:func:`load_sam_checkpoint`.
"""

import logging
import os
import pickle
from dataclasses import dataclass, field
from functools import partial
from typing import List, Optional

import torch
from segment_anything.modeling import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)

__all__ = [
    "SAM_CHECKPOINT_URLS",
    "SAM_PIXEL_MEAN",
    "SAM_PIXEL_STD",
    "SamArchitecture",
    "SamCheckpointError",
    "build_sam",
    "build_sam_from_cfg",
    "load_sam_checkpoint",
    "sam_architecture_from_cfg",
]

logger = logging.getLogger(__name__)

SAM_CHECKPOINT_URLS = {
    "vit_b": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
    "vit_l": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
    "vit_h": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
}
# SAM's pixel normalisation (RGB, [0, 255]), as in segment_anything's build_sam: the one home of
# these constants (MODEL.PIXEL_MEAN/STD of every config whose model feeds SAM must equal them).
SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)
SAM_PIXEL_STD = (58.395, 57.12, 57.375)
SAM_CHECKPOINT_PAGE = "https://github.com/facebookresearch/segment-anything#model-checkpoints"

# (embed dim, depth, heads, global-attention blocks) of the official image encoders.
_OFFICIAL_ENCODERS = {
    "vit_b": (768, 12, 12, (2, 5, 8, 11)),
    "vit_l": (1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": (1280, 32, 16, (7, 15, 23, 31)),
}


class SamCheckpointError(RuntimeError):
    """A SAM checkpoint is missing, unreadable or does not fit the configured architecture."""


@dataclass
class SamArchitecture:
    """Every size that defines a SAM built from ``segment_anything``'s modules."""

    variant: str = "vit_b"
    image_size: int = 1024
    patch_size: int = 16
    prompt_embed_dim: int = 256
    encoder_embed_dim: int = 768
    encoder_depth: int = 12
    encoder_num_heads: int = 12
    encoder_global_attn_indexes: List[int] = field(default_factory=lambda: [2, 5, 8, 11])
    encoder_window_size: int = 14
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048

    def __post_init__(self):
        if self.variant in _OFFICIAL_ENCODERS:
            dim, depth, heads, global_idx = _OFFICIAL_ENCODERS[self.variant]
            self.encoder_embed_dim, self.encoder_depth, self.encoder_num_heads = dim, depth, heads
            self.encoder_global_attn_indexes = list(global_idx)
        elif self.variant != "custom":
            raise ValueError(
                f"Unknown SAM variant {self.variant!r}: use one of "
                f"{sorted(_OFFICIAL_ENCODERS)} or 'custom' (with the MODEL.SAM.ENCODER_* keys)."
            )
        if self.image_size % self.patch_size:
            raise ValueError(
                f"SAM image size {self.image_size} is not a multiple of patch size "
                f"{self.patch_size}"
            )
        self.encoder_global_attn_indexes = [int(i) for i in self.encoder_global_attn_indexes]
        bad = [i for i in self.encoder_global_attn_indexes if not 0 <= i < self.encoder_depth]
        if bad:
            raise ValueError(
                f"Global-attention block indexes {bad} are outside an encoder of depth "
                f"{self.encoder_depth}"
            )

    @property
    def embedding_size(self) -> int:
        """Side of the image embedding (64 for the official 1024 / 16)."""
        return self.image_size // self.patch_size

    def describe(self) -> str:
        return (
            f"{self.variant} (image {self.image_size}, encoder dim {self.encoder_embed_dim}, "
            f"depth {self.encoder_depth}, heads {self.encoder_num_heads})"
        )


def sam_architecture_from_cfg(cfg) -> SamArchitecture:
    c = cfg.MODEL.SAM
    return SamArchitecture(
        variant=c.VARIANT,
        image_size=c.IMAGE_SIZE,
        patch_size=c.PATCH_SIZE,
        prompt_embed_dim=c.PROMPT_EMBED_DIM,
        encoder_embed_dim=c.ENCODER_EMBED_DIM,
        encoder_depth=c.ENCODER_DEPTH,
        encoder_num_heads=c.ENCODER_NUM_HEADS,
        encoder_global_attn_indexes=list(c.ENCODER_GLOBAL_ATTN_INDEXES),
        encoder_window_size=c.ENCODER_WINDOW_SIZE,
        decoder_depth=c.DECODER_DEPTH,
        decoder_mlp_dim=c.DECODER_MLP_DIM,
    )


def build_sam(arch: SamArchitecture, checkpoint: Optional[str] = None) -> Sam:
    """Build a ``segment_anything.modeling.Sam`` of architecture ``arch``; load ``checkpoint``."""
    embedding_size = arch.embedding_size
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=arch.encoder_depth,
            embed_dim=arch.encoder_embed_dim,
            img_size=arch.image_size,
            mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=arch.encoder_num_heads,
            patch_size=arch.patch_size,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=tuple(arch.encoder_global_attn_indexes),
            window_size=arch.encoder_window_size,
            out_chans=arch.prompt_embed_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=arch.prompt_embed_dim,
            image_embedding_size=(embedding_size, embedding_size),
            input_image_size=(arch.image_size, arch.image_size),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=arch.decoder_depth,
                embedding_dim=arch.prompt_embed_dim,
                mlp_dim=arch.decoder_mlp_dim,
                num_heads=8,
            ),
            transformer_dim=arch.prompt_embed_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        ),
        pixel_mean=list(SAM_PIXEL_MEAN),
        pixel_std=list(SAM_PIXEL_STD),
    )
    if checkpoint:
        load_sam_checkpoint(sam, checkpoint, arch)
    return sam


def build_sam_from_cfg(cfg) -> Sam:
    return build_sam(sam_architecture_from_cfg(cfg), cfg.MODEL.SAM.CHECKPOINT or None)


def _describe_checkpoint(state_dict) -> str:
    """Name the architecture a SAM state dict was saved from, as far as its shapes tell."""
    patch = state_dict.get("image_encoder.patch_embed.proj.weight")
    if patch is None:
        return "not a SAM state dict"
    dim = patch.shape[0]
    depth = len({k.split(".")[2] for k in state_dict if k.startswith("image_encoder.blocks.")})
    for name, (o_dim, o_depth, _, _) in _OFFICIAL_ENCODERS.items():
        if (dim, depth) == (o_dim, o_depth):
            return f"{name} (encoder dim {dim}, depth {depth})"
    pos = state_dict.get("image_encoder.pos_embed")
    size = f", embedding {pos.shape[1]}x{pos.shape[2]}" if pos is not None else ""
    return f"custom (encoder dim {dim}, depth {depth}{size})"


def load_sam_checkpoint(sam: Sam, path: str, arch: SamArchitecture) -> None:
    """Load a SAM state dict (official ``sam_vit_*.pth`` layout) into ``sam``, strictly.

    Raises :class:`SamCheckpointError` with what is wrong and what to do when the file is missing,
    is not a SAM state dict, or was saved from another architecture.
    """
    if not os.path.isfile(path):
        official = SAM_CHECKPOINT_URLS.get(arch.variant)
        hint = (
            f"The official {arch.variant} checkpoint is published at {official} "
            f"(all of them: {SAM_CHECKPOINT_PAGE})."
            if official
            else "A custom-size SAM checkpoint is made by tools/train_tiny_sam.py."
        )
        raise SamCheckpointError(
            f"SAM checkpoint not found: {path!r} (MODEL.SAM.CHECKPOINT). {hint} Download it and "
            "point MODEL.SAM.CHECKPOINT at the file."
        )
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means "not a usable file"
        if isinstance(e, pickle.UnpicklingError) and "Unsupported global" in str(e):
            raise SamCheckpointError(
                f"Refused to load SAM checkpoint {path!r}: it holds pickled Python objects other "
                "than tensors, which torch.load(weights_only=True) does not run (they can execute "
                "code). The official sam_vit_*.pth files hold tensors only: re-download it from "
                f"{SAM_CHECKPOINT_PAGE}."
            ) from e
        raise SamCheckpointError(
            f"Could not read SAM checkpoint {path!r}: {e}. Expected a state dict saved with "
            "torch.save (like the official sam_vit_*.pth files); re-download it if it is truncated."
        ) from e
    if (
        isinstance(state_dict, dict)
        and "model" in state_dict
        and isinstance(state_dict["model"], dict)
    ):
        state_dict = state_dict["model"]
    if not isinstance(state_dict, dict) or not any(
        k.startswith("image_encoder.") for k in state_dict
    ):
        raise SamCheckpointError(
            f"{path!r} is not a SAM state dict: expected keys 'image_encoder.*', "
            "'prompt_encoder.*' and 'mask_decoder.*' as in the official sam_vit_*.pth files."
        )
    expected = sam.state_dict()
    mismatched = [
        k for k, v in state_dict.items() if k in expected and expected[k].shape != v.shape
    ]
    missing = [k for k in expected if k not in state_dict]
    if mismatched or missing:
        raise SamCheckpointError(
            f"SAM checkpoint {path!r} holds a {_describe_checkpoint(state_dict)} model, but the "
            f"config builds {arch.describe()} (MODEL.SAM.VARIANT={arch.variant!r}). Set "
            "MODEL.SAM.VARIANT (and for 'custom' the MODEL.SAM.ENCODER_* / IMAGE_SIZE keys) to "
            "match the checkpoint, or use the checkpoint of the configured variant. "
            f"{len(mismatched)} tensors differ in shape, {len(missing)} are missing"
            + (f" (first: {(mismatched + missing)[0]})." if mismatched or missing else ".")
        )
    unexpected = [k for k in state_dict if k not in expected]
    if unexpected:
        raise SamCheckpointError(
            f"SAM checkpoint {path!r} has {len(unexpected)} keys this SAM does not have "
            f"(first: {unexpected[0]}); it was not saved from a segment_anything Sam."
        )
    sam.load_state_dict(state_dict, strict=True)
    logger.info(f"Loaded SAM {arch.describe()} weights from {path}")
