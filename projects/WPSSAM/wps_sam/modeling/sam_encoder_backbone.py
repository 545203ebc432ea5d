"""A detectron2 backbone over SAM's frozen image encoder (the "SAM-Encoder" detector of the paper's
Table 4), with a ViTDet-style simple feature pyramid over its single-scale embedding."""

import contextlib
import math
from typing import Dict, List, Optional, Sequence

import torch
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from segment_anything.modeling.common import LayerNorm2d
from torch import Tensor, nn
from torch.nn import functional as F

from .sam_builder import build_sam_from_cfg

__all__ = ["SAMEncoderBackbone", "build_sam_encoder_backbone"]


def _norm(norm: str, channels: int) -> Optional[nn.Module]:
    """ "LN" (SAM's / ViTDet's channel LayerNorm) or any of detectron2's ``get_norm`` names."""
    return LayerNorm2d(channels) if norm == "LN" else get_norm(norm, channels)


class SAMEncoderBackbone(Backbone):
    """Frozen SAM image encoder + simple feature pyramid (ViTDet, Li et al. 2022).

    The encoder maps the (B, 3, S, S) normalised, bottom-right zero-padded image batch (SAM's own
    input: S = MODEL.SAM.IMAGE_SIZE) to one (B, D, S/P, S/P) embedding (P = patch size). Each
    scale factor f builds one level of stride P/f from it: f=4 two stride-2 transposed convs, f=2
    one, f=1 the embedding itself, f=0.5 a stride-2 max pool; then a 1x1 and a 3x3 conv (each with
    ``norm``) to ``out_channels``. The levels are named "p<log2 stride>" (p2..p5 for P=16), plus
    one max-pooled level above the coarsest with ``top_block`` (FPN's p6 for the RPN).

    Only the pyramid trains; the encoder stays frozen in eval mode. Its embedding can be supplied
    from the embedding cache instead of computed: see :meth:`precomputed_embeddings`.
    """

    def __init__(
        self,
        sam_encoder: nn.Module,
        *,
        patch_size: int,
        scale_factors: Sequence[float] = (4.0, 2.0, 1.0, 0.5),
        out_channels: int = 256,
        top_block: bool = True,
        norm: str = "LN",
    ):
        super().__init__()
        self.sam_encoder = sam_encoder
        for p in self.sam_encoder.parameters():
            p.requires_grad_(False)
        self.sam_encoder.eval()
        self.image_size = sam_encoder.img_size
        dim = sam_encoder.neck[0].out_channels  # the embedding's channels (256 for every SAM)
        self._precomputed: Optional[Tensor] = None

        self.stages = nn.ModuleList()
        self._out_features: List[str] = []
        self._out_feature_strides: Dict[str, int] = {}
        self._out_feature_channels: Dict[str, int] = {}
        for scale in scale_factors:
            if scale == 4.0:
                layers = [
                    nn.ConvTranspose2d(dim, dim // 2, 2, stride=2),
                    LayerNorm2d(dim // 2),
                    nn.GELU(),
                    nn.ConvTranspose2d(dim // 2, dim // 4, 2, stride=2),
                ]
                in_dim = dim // 4
            elif scale == 2.0:
                layers, in_dim = [nn.ConvTranspose2d(dim, dim // 2, 2, stride=2)], dim // 2
            elif scale == 1.0:
                layers, in_dim = [], dim
            elif scale == 0.5:
                layers, in_dim = [nn.MaxPool2d(2, stride=2)], dim
            else:
                raise ValueError(
                    f"MODEL.SAM_ENCODER_BACKBONE.SCALE_FACTORS: {scale} is not one of 4, 2, 1, 0.5"
                )
            layers += [
                Conv2d(in_dim, out_channels, 1, bias=not norm, norm=_norm(norm, out_channels)),
                Conv2d(
                    out_channels,
                    out_channels,
                    3,
                    padding=1,
                    bias=not norm,
                    norm=_norm(norm, out_channels),
                ),
            ]
            self.stages.append(nn.Sequential(*layers))
            stride = int(patch_size / scale)
            name = f"p{int(math.log2(stride))}"
            self._out_features.append(name)
            self._out_feature_strides[name] = stride
            self._out_feature_channels[name] = out_channels
        self.top_block = top_block
        if top_block:
            stride = 2 * max(self._out_feature_strides.values())
            name = f"p{int(math.log2(stride))}"
            self._out_features.append(name)
            self._out_feature_strides[name] = stride
            self._out_feature_channels[name] = out_channels

    @property
    def size_divisibility(self) -> int:
        """Batches are padded to S x S: SAM's encoder takes exactly its square input."""
        return self.image_size

    def train(self, mode: bool = True):
        super().train(mode)
        self.sam_encoder.eval()
        return self

    @contextlib.contextmanager
    def precomputed_embeddings(self, embeddings: Optional[Tensor]):
        """Within this context the next forward calls use ``embeddings`` (B, D, S/P, S/P), e.g.
        read from the embedding cache, instead of running the encoder. None: run the encoder."""
        self._precomputed = embeddings
        try:
            yield
        finally:
            self._precomputed = None

    def embed(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) normalised images, H, W <= S -> (B, D, S/P, S/P) frozen embeddings."""
        if self._precomputed is not None:
            if self._precomputed.shape[0] != x.shape[0]:
                raise ValueError(
                    f"{self._precomputed.shape[0]} precomputed embeddings for a batch of "
                    f"{x.shape[0]} images"
                )
            return self._precomputed.to(x)
        h, w = x.shape[-2:]
        if max(h, w) > self.image_size:
            raise ValueError(
                f"Input batch of size {h}x{w} is larger than SAM's input ({self.image_size}): the "
                "SAM-encoder backbone needs images resized so that their longest side is "
                "MODEL.SAM.IMAGE_SIZE (set INPUT.MIN_SIZE_* and INPUT.MAX_SIZE_* to it)."
            )
        x = F.pad(x, (0, self.image_size - w, 0, self.image_size - h))
        with torch.no_grad():
            return self.sam_encoder(x)

    def forward(self, x: Tensor) -> Dict[str, Tensor]:
        """
        Args:
            x: (B, 3, H, W) images normalised with SAM's pixel mean/std, H, W <= S.
        Returns:
            dict "p<k>" -> (B, out_channels, S / 2^k, S / 2^k) (for inputs smaller than S the
            levels still cover the S x S frame: the detector sees the zero padding).
        """
        embedding = self.embed(x)
        features = {}
        for name, stage in zip(self._out_features, self.stages):
            features[name] = stage(embedding)
        if self.top_block:
            last = self._out_features[len(self.stages) - 1]
            features[self._out_features[-1]] = F.max_pool2d(features[last], 1, stride=2)
        return features

    def output_shape(self) -> Dict[str, ShapeSpec]:
        return {
            name: ShapeSpec(
                channels=self._out_feature_channels[name], stride=self._out_feature_strides[name]
            )
            for name in self._out_features
        }


@BACKBONE_REGISTRY.register()
def build_sam_encoder_backbone(cfg, input_shape: ShapeSpec) -> SAMEncoderBackbone:
    """MODEL.BACKBONE.NAME "build_sam_encoder_backbone": the SAM of MODEL.SAM (its checkpoint
    loaded with the same checks as WPS-SAM's) and the pyramid of MODEL.SAM_ENCODER_BACKBONE."""
    c = cfg.MODEL.SAM_ENCODER_BACKBONE
    sam = build_sam_from_cfg(cfg)
    return SAMEncoderBackbone(
        sam.image_encoder,
        patch_size=cfg.MODEL.SAM.PATCH_SIZE,
        scale_factors=list(c.SCALE_FACTORS),
        out_channels=c.OUT_CHANNELS,
        top_block=c.TOP_BLOCK,
        norm=c.NORM,
    )
