"""The query-based student prompter of WPS-SAM (paper Sec. 3.2, Fig. 4b)."""

import math
from typing import Dict, Optional, Sequence

import torch
from detectron2.config import configurable
from segment_anything.modeling.common import LayerNorm2d
from torch import Tensor, nn
from torchvision.ops import box_convert, nms

from .transformer import PrompterTransformer

__all__ = [
    "QueryPrompter",
    "FusionConvBlock",
    "sine_position_embedding",
    "grid_anchor_boxes",
    "POS_EMBEDS",
]

POS_EMBEDS = ("learned", "sine", "sam")
PROMPT_HEADS = ("tokens", "anchored_box")
QUERY_SELECTIONS = ("learned", "memory")


def sine_position_embedding(dim: int, height: int, width: int) -> Tensor:
    """Fixed 2-D sine/cosine embedding (DETR's normalised variant), shape (1, dim, H, W)."""
    if dim % 4:
        raise ValueError(f"sine positional embedding needs a dim divisible by 4, got {dim}")
    quarter = dim // 4
    y = (torch.arange(height, dtype=torch.float32) + 0.5) / height * 2 * math.pi
    x = (torch.arange(width, dtype=torch.float32) + 0.5) / width * 2 * math.pi
    freqs = 10000 ** (torch.arange(quarter, dtype=torch.float32) / quarter)
    y = y[:, None] / freqs  # H, quarter
    x = x[:, None] / freqs  # W, quarter
    pos_y = torch.cat([y.sin(), y.cos()], dim=1)[:, None, :].expand(height, width, 2 * quarter)
    pos_x = torch.cat([x.sin(), x.cos()], dim=1)[None, :, :].expand(height, width, 2 * quarter)
    return torch.cat([pos_y, pos_x], dim=2).permute(2, 0, 1).unsqueeze(0).contiguous()


def grid_anchor_boxes(num_anchors: int) -> Tensor:
    """(N, 4) normalised (cx, cy, w, h) boxes: the cells of a g x g grid (g = ceil(sqrt(N))),
    N of them taken evenly spaced in raster order, each as large as its cell."""
    g = math.ceil(math.sqrt(num_anchors))
    cells = torch.linspace(0, g * g - 1, num_anchors).round().long()
    cx = (cells % g).float().add(0.5).div(g)
    cy = (cells // g).float().add(0.5).div(g)
    size = torch.full_like(cx, 1.0 / g)
    return torch.stack([cx, cy, size, size], dim=1)


def box_correction_mlp(in_dim: int, hidden_dim: int) -> nn.Sequential:
    """in_dim -> hidden_dim -> 4 MLP predicting a box correction in logit space; its last layer is
    zero-initialised, so an untrained head predicts no correction at all."""
    mlp = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, 4))
    nn.init.zeros_(mlp[-1].weight)
    nn.init.zeros_(mlp[-1].bias)
    return mlp


class FusionConvBlock(nn.Module):
    """x + GELU(LayerNorm2d(conv3x3(x))): local context at constant resolution, (B, D, H, W).

    ``dilation`` > 1 widens the 3x3 kernel's reach (a stack with dilations 1, 2, 4, 8 sees the
    whole 16x16 grid of the tiny SAM): global context that, on CPU budgets, learns part identity
    faster than attention over the cells (docs/BENCHMARK.md).
    """

    def __init__(self, channels: int, dilation: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(
            channels, channels, kernel_size=3, padding=dilation, dilation=dilation
        )
        self.norm = LayerNorm2d(channels)
        self.act = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        return x + self.act(self.norm(self.conv(x)))


class QueryPrompter(nn.Module):
    """Turns SAM image embeddings into S (class, prompt tokens) predictions.

    Downsampling convolutions (3x3, stride 2, each + LayerNorm2d + GELU), a positional embedding,
    a DETR-style transformer with S learned queries, then two heads on the decoder output: a
    classifier over C part classes + "no part", and a prompt head. The paper's prompt head
    (``prompt_head="tokens"``) is an MLP emitting ``num_prompt_tokens`` SAM prompt tokens per query.

    ``prompt_head="anchored_box"`` is a convergence aid for small training budgets (DETR learns
    where things are slowly; anchor-based queries, as in Anchor-DETR and DAB-DETR, learn it much
    faster). Each query owns a learned anchor box, initialised on a grid over the image; SAM's
    Fourier encoding of the anchor's centre is added to the query's positional embedding, so a
    query looks near its anchor from the start; an MLP predicts the box as a correction of the
    anchor ("pred_boxes"). The caller turns the boxes into prompt tokens with SAM's frozen prompt
    encoder (``WPSSAM`` does), so the tokens stay on the teacher's manifold and the distillation
    loss and matching are unchanged.

    ``query_selection="memory"`` makes the anchored head two-stage (Deformable DETR, DINO): every
    memory cell proposes a part class and a box, and the best S proposals after box NMS give the
    queries their anchors and initial content, so queries start on the parts instead of on a grid.
    """

    @configurable
    def __init__(
        self,
        *,
        num_classes: int,
        num_queries: int = 25,
        in_channels: int = 256,
        embedding_size: int = 64,
        hidden_dim: int = 256,
        nheads: int = 8,
        dim_feedforward: int = 1024,
        enc_layers: int = 6,
        dec_layers: int = 6,
        num_downsample_convs: int = 2,
        num_fusion_convs: int = 0,
        fusion_dilations: Sequence[int] = (),
        pos_embed: str = "learned",
        prompt_head_hidden_dim: int = 512,
        num_prompt_tokens: int = 2,
        prompt_embed_dim: int = 256,
        deep_supervision: bool = False,
        prompt_head: str = "tokens",
        memory_class_head: bool = False,
        query_selection: str = "learned",
        selection_nms_threshold: float = 0.5,
    ):
        """
        Args:
            num_classes: C, the number of part classes (the classifier has C + 1 outputs).
            num_queries: S.
            in_channels: channels of the SAM image embedding (256).
            embedding_size: side of the SAM image embedding (64 for 1024 / 16).
            num_downsample_convs: stride-2 convolutions; the memory is embedding_size / 2**n.
            num_fusion_convs: residual 3x3 stride-1 convolution blocks after them (local context
                for embeddings too small to downsample, such as the tiny SAM's 16x16).
            fusion_dilations: dilation of each fusion block (empty: all 1; else one per block).
            pos_embed: "learned" (zero-initialised parameter, as the authors), "sine", or "sam":
                SAM's frozen random-Fourier encoding of the memory cell centres, the basis in which
                SAM's prompt encoder writes box corners (set by :meth:`use_sam_position_encoding`).
            num_prompt_tokens, prompt_embed_dim: shape of the emitted prompt per query (from the
                config: the foundation's teacher, which emits 2 tokens per prompt).
            deep_supervision: in training, also emit the heads' predictions on every earlier
                decoder layer ("aux_outputs"), for DETR's auxiliary losses.
            prompt_head: "tokens" (the paper) or "anchored_box" (see the class docstring; needs
                ``pos_embed="sam"``).
            memory_class_head: in training, also classify every cell of the encoder memory
                ("memory_logits"), for the criterion's dense auxiliary loss from the weak labels.
            query_selection: where the anchored queries start. "learned": one learned anchor box
                per query on a grid. "memory" (two-stage, as Deformable DETR / DINO): every memory
                cell proposes a part class and a box ("memory_logits", "memory_boxes"); the S
                best-scoring proposals left after box NMS become the queries' anchors, and the
                cells' features their initial content. Needs the anchored head and the memory
                class head.
            selection_nms_threshold: IoU above which a lower-scoring proposal is set aside.
        """
        super().__init__()
        if pos_embed not in POS_EMBEDS:
            raise ValueError(
                f"MODEL.WPS_SAM.POS_EMBED must be one of {POS_EMBEDS}, not {pos_embed!r}"
            )
        if pos_embed == "sam" and hidden_dim != prompt_embed_dim:
            raise ValueError(
                f"MODEL.WPS_SAM.POS_EMBED 'sam' needs HIDDEN_DIM == SAM's prompt embedding dim "
                f"({prompt_embed_dim}), got {hidden_dim}"
            )
        if prompt_head not in PROMPT_HEADS:
            raise ValueError(
                f"MODEL.WPS_SAM.PROMPT_HEAD must be one of {PROMPT_HEADS}, not {prompt_head!r}"
            )
        if query_selection not in QUERY_SELECTIONS:
            raise ValueError(
                f"MODEL.WPS_SAM.QUERY_SELECTION must be one of {QUERY_SELECTIONS}, "
                f"not {query_selection!r}"
            )
        if query_selection == "memory" and (prompt_head != "anchored_box" or not memory_class_head):
            raise ValueError(
                "MODEL.WPS_SAM.QUERY_SELECTION 'memory' needs PROMPT_HEAD 'anchored_box' and the "
                "memory class head (MODEL.WPS_SAM.DENSE_CLASS_WEIGHT > 0), which trains the cells' "
                f"part scores; got PROMPT_HEAD {prompt_head!r}, memory class head "
                f"{memory_class_head}"
            )
        if prompt_head == "anchored_box" and pos_embed != "sam":
            raise ValueError(
                "MODEL.WPS_SAM.PROMPT_HEAD 'anchored_box' needs MODEL.WPS_SAM.POS_EMBED 'sam' (the "
                f"anchors are encoded in the basis of the memory's positions), got {pos_embed!r}"
            )
        layers = []
        channels = in_channels
        for _ in range(num_downsample_convs):
            layers += [
                nn.Conv2d(channels, hidden_dim, kernel_size=3, stride=2, padding=1),
                LayerNorm2d(hidden_dim),
                nn.GELU(),
            ]
            channels = hidden_dim
        if channels != hidden_dim:  # no downsampling: still project to the transformer width
            layers.append(nn.Conv2d(channels, hidden_dim, kernel_size=1))
        fusion_dilations = list(fusion_dilations) or [1] * num_fusion_convs
        if len(fusion_dilations) != num_fusion_convs or min(fusion_dilations, default=1) < 1:
            raise ValueError(
                f"MODEL.WPS_SAM.FUSION_DILATIONS must be empty or hold one dilation >= 1 per "
                f"fusion conv (NUM_FUSION_CONVS {num_fusion_convs}), got {fusion_dilations}"
            )
        layers += [FusionConvBlock(hidden_dim, d) for d in fusion_dilations]
        self.downsample = nn.Sequential(*layers)
        side = embedding_size
        for _ in range(num_downsample_convs):
            side = (side + 1) // 2
        self.memory_size = side
        self.pos_embed_type = pos_embed
        if pos_embed == "learned":
            self.pos_embed = nn.Parameter(torch.zeros(1, hidden_dim, side, side))
        elif pos_embed == "sine":
            self.register_buffer(
                "pos_embed", sine_position_embedding(hidden_dim, side, side), persistent=False
            )
        else:  # filled from SAM by use_sam_position_encoding()
            self.register_buffer(
                "pos_embed", torch.zeros(1, hidden_dim, side, side), persistent=False
            )
        self.transformer = PrompterTransformer(
            d_model=hidden_dim,
            nhead=nheads,
            num_encoder_layers=enc_layers,
            num_decoder_layers=dec_layers,
            dim_feedforward=dim_feedforward,
            dropout=0.0,
            normalize_before=False,
        )
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.class_head = nn.Linear(hidden_dim, num_classes + 1)
        self.prompt_head_type = prompt_head
        if prompt_head == "tokens":
            self.prompt_head = nn.Sequential(
                nn.Linear(hidden_dim, prompt_head_hidden_dim),
                nn.GELU(),
                nn.Linear(prompt_head_hidden_dim, num_prompt_tokens * prompt_embed_dim),
            )
        else:
            if query_selection == "learned":
                # Under "memory" selection the anchors come from the cells' proposals instead; a
                # learned set here would be a parameter without gradient (DDP refuses those).
                anchors = grid_anchor_boxes(num_queries).clamp(1e-4, 1 - 1e-4)
                self.anchor_logits = nn.Parameter(torch.logit(anchors))  # S, 4 (cx, cy, w, h)
            # Start exactly at the anchors: the first matchings are then spatially consistent.
            self.box_head = box_correction_mlp(hidden_dim, prompt_head_hidden_dim)
        self.memory_class_head = (
            nn.Linear(hidden_dim, num_classes + 1) if memory_class_head else None
        )
        self.query_selection = query_selection
        self.selection_nms_threshold = selection_nms_threshold
        if query_selection == "memory":
            if num_queries > side * side:
                raise ValueError(
                    f"MODEL.WPS_SAM.QUERY_SELECTION 'memory' picks the queries among the "
                    f"{side}x{side} memory cells: NUM_QUERIES ({num_queries}) cannot exceed "
                    f"{side * side}"
                )
            # Each cell proposes a box as a correction of a box centred on it, two cells wide.
            cells = grid_anchor_boxes(side * side)
            cells[:, 2:] = 2.0 / side
            self.register_buffer("cell_anchor_logits", torch.logit(cells.clamp(1e-4, 1 - 1e-4)))
            self.memory_box_head = box_correction_mlp(hidden_dim, hidden_dim)
            self.query_content = nn.Sequential(
                nn.Linear(hidden_dim, hidden_dim), nn.LayerNorm(hidden_dim)
            )
        self._sam_pe_layer = ()  # (SAM's PositionEmbeddingRandom,), kept out of the state dict
        self.num_classes = num_classes
        self.num_queries = num_queries
        self.num_prompt_tokens = num_prompt_tokens
        self.prompt_embed_dim = prompt_embed_dim
        self.deep_supervision = deep_supervision

    @classmethod
    def from_config(cls, cfg, num_prompt_tokens: int = 2):
        """``num_prompt_tokens``: tokens per prompt of the foundation's teacher (WPSSAM passes
        ``FrozenFoundation.num_prompt_tokens``)."""
        w = cfg.MODEL.WPS_SAM
        return {
            "num_classes": w.NUM_CLASSES,
            "num_queries": w.NUM_QUERIES,
            "in_channels": cfg.MODEL.SAM.PROMPT_EMBED_DIM,
            "embedding_size": cfg.MODEL.SAM.IMAGE_SIZE // cfg.MODEL.SAM.PATCH_SIZE,
            "hidden_dim": w.HIDDEN_DIM,
            "nheads": w.NHEADS,
            "dim_feedforward": w.DIM_FEEDFORWARD,
            "enc_layers": w.ENC_LAYERS,
            "dec_layers": w.DEC_LAYERS,
            "num_downsample_convs": w.NUM_DOWNSAMPLE_CONVS,
            "num_fusion_convs": w.NUM_FUSION_CONVS,
            "fusion_dilations": w.FUSION_DILATIONS,
            "pos_embed": w.POS_EMBED,
            "prompt_head_hidden_dim": w.PROMPT_HEAD_HIDDEN_DIM,
            "num_prompt_tokens": num_prompt_tokens,
            "prompt_embed_dim": cfg.MODEL.SAM.PROMPT_EMBED_DIM,
            "deep_supervision": w.DEEP_SUPERVISION,
            "prompt_head": w.PROMPT_HEAD,
            "memory_class_head": w.DENSE_CLASS_WEIGHT > 0,
            "query_selection": w.QUERY_SELECTION,
        }

    @torch.no_grad()
    def use_sam_position_encoding(self, pe_layer: nn.Module) -> None:
        """Take the "sam" positional embedding from SAM's ``PositionEmbeddingRandom`` (frozen),
        evaluated at the centres of the memory's cells over the image frame."""
        if self.pos_embed_type != "sam":
            raise RuntimeError(f"the prompter's positional embedding is {self.pos_embed_type!r}")
        side = self.memory_size
        pe = pe_layer((side, side)).to(self.pos_embed)
        self.pos_embed.copy_(pe.unsqueeze(0))
        self._sam_pe_layer = (pe_layer,)

    def anchor_position_embedding(self, anchor_logits: Optional[Tensor] = None) -> Tensor:
        """(S, hidden_dim), or (B, S, hidden_dim) for (B, S, 4) ``anchor_logits``: SAM's Fourier
        encoding of the anchor centres (anchored_box head); default: the learned anchors."""
        if anchor_logits is None:
            anchor_logits = self.anchor_logits
        centres = anchor_logits[..., :2].sigmoid()
        batched = centres.dim() == 3
        if not batched:
            centres = centres[None]  # 1, S, 2 normalised xy
        pe = self._sam_pe_layer[0].forward_with_coords(centres, (1, 1)).to(centres.dtype)
        return pe if batched else pe[0]

    @torch.no_grad()
    def select_proposals(self, scores: Tensor, boxes: Tensor) -> Tensor:
        """(B, S) indices of the cells whose proposals become the queries' anchors.

        Per image: the proposals by decreasing part score, those overlapping a better one by more
        than ``selection_nms_threshold`` IoU set aside (box NMS, so that each part gets its own
        query), the best S kept; if fewer than S survive, the best set-aside ones fill up.

        Args:
            scores: (B, N) part score of each cell (best part-class probability).
            boxes: (B, N, 4) normalised (cx, cy, w, h) proposals.
        """
        selected = []
        for image_scores, image_boxes in zip(scores, boxes):
            xyxy = box_convert(image_boxes.float(), "cxcywh", "xyxy")
            kept = nms(xyxy, image_scores.float(), self.selection_nms_threshold)
            rest = torch.ones_like(image_scores, dtype=torch.bool)
            rest[kept] = False
            others = rest.nonzero()[:, 0]
            others = others[image_scores[others].argsort(descending=True)]
            selected.append(torch.cat([kept, others])[: self.num_queries])
        return torch.stack(selected)

    def forward(self, image_embeddings: Tensor) -> Dict[str, Tensor]:
        """
        Args:
            image_embeddings: (B, 256, E, E) SAM image embeddings.
        Returns:
            dict with "pred_logits": (B, S, C + 1) and, for the "tokens" head, "pred_prompts":
            (B, S, T, D) prompt tokens (T = num_prompt_tokens, D = prompt_embed_dim); for the
            "anchored_box" head instead "pred_boxes": (B, S, 4) normalised (cx, cy, w, h) boxes in
            SAM's square input frame. With deep supervision in training, also "aux_outputs": a
            list of such dicts, one per decoder layer but the last. With the memory class head
            in training, also "memory_logits": (B, C + 1, M, M) class logits of the encoder
            memory's cells (M = the memory's side).
        """
        src = self.downsample(image_embeddings)
        if self.pos_embed_type == "sam" and not self._sam_pe_layer:
            raise RuntimeError(
                "QueryPrompter with POS_EMBED 'sam' needs use_sam_position_encoding(sam's "
                "prompt_encoder.pe_layer) first (WPSSAM does it)"
            )
        with_aux = self.deep_supervision and self.training
        memory = self.transformer.encode(src, self.pos_embed)
        query_pos, tgt, proposals = self.query_embed.weight, None, {}
        anchor_logits = getattr(self, "anchor_logits", None)
        if self.query_selection == "memory":
            proposals = self.memory_proposals(memory)
            index = self.select_proposals(proposals["scores"], proposals["boxes"])
            gather = index[:, :, None]
            boxes = proposals["boxes"].detach().gather(1, gather.expand(-1, -1, 4))
            anchor_logits = torch.logit(boxes.clamp(1e-4, 1 - 1e-4))  # B, S, 4
            cells = memory.gather(1, gather.expand(-1, -1, memory.shape[-1]))
            tgt = self.query_content(cells)
            query_pos = query_pos + self.anchor_position_embedding(anchor_logits)
        elif self.prompt_head_type == "anchored_box":
            query_pos = query_pos + self.anchor_position_embedding()
        hs = self.transformer.decode(memory, self.pos_embed, query_pos, with_aux, tgt)
        if not with_aux:
            hs = hs[None]
        layers, b, s, _ = hs.shape
        per_layer = {"pred_logits": self.class_head(hs)}
        if self.prompt_head_type == "tokens":
            per_layer["pred_prompts"] = self.prompt_head(hs).view(
                layers, b, s, self.num_prompt_tokens, self.prompt_embed_dim
            )
        else:
            per_layer["pred_boxes"] = (anchor_logits + self.box_head(hs)).sigmoid()
        outputs = {k: v[-1] for k, v in per_layer.items()}
        if with_aux:
            outputs["aux_outputs"] = [
                {k: v[i] for k, v in per_layer.items()} for i in range(layers - 1)
            ]
        if self.memory_class_head is not None and self.training:
            side = self.memory_size
            logits = proposals.get("logits")
            if logits is None:
                logits = self.memory_class_head(memory)
            outputs["memory_logits"] = logits.transpose(1, 2).reshape(b, -1, side, side)
            if "boxes" in proposals:
                outputs["memory_boxes"] = (
                    proposals["boxes"].transpose(1, 2).reshape(b, 4, side, side)
                )
        return outputs

    def memory_proposals(self, memory: Tensor) -> Dict[str, Tensor]:
        """Every memory cell's proposal (query_selection "memory").

        Args:
            memory: (B, N, D) encoder memory (N = M * M cells in raster order).
        Returns:
            dict with "logits" (B, N, C + 1) class logits, "scores" (B, N) the best part-class
            probability, "boxes" (B, N, 4) normalised (cx, cy, w, h) boxes.
        """
        logits = self.memory_class_head(memory)
        scores = logits.detach().softmax(-1)[..., : self.num_classes].max(-1).values
        boxes = (self.cell_anchor_logits + self.memory_box_head(memory)).sigmoid()
        return {"logits": logits, "scores": scores, "boxes": boxes}
