"""A DETR-style encoder-decoder transformer (positional embeddings added at every layer)."""

import copy
from typing import Optional

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["PrompterTransformer"]


def _clones(module: nn.Module, n: int) -> nn.ModuleList:
    return nn.ModuleList([copy.deepcopy(module) for _ in range(n)])


def _with_pos(x: Tensor, pos: Optional[Tensor]) -> Tensor:
    return x if pos is None else x + pos


class EncoderLayer(nn.Module):
    def __init__(self, d_model, nhead, dim_feedforward, dropout, normalize_before):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.normalize_before = normalize_before

    def _ffn(self, x):
        return self.linear2(self.dropout(F.relu(self.linear1(x))))

    def forward(self, src: Tensor, pos: Optional[Tensor]) -> Tensor:
        if self.normalize_before:
            x = self.norm1(src)
            q = k = _with_pos(x, pos)
            src = src + self.dropout(self.self_attn(q, k, x, need_weights=False)[0])
            return src + self.dropout(self._ffn(self.norm2(src)))
        q = k = _with_pos(src, pos)
        src = self.norm1(src + self.dropout(self.self_attn(q, k, src, need_weights=False)[0]))
        return self.norm2(src + self.dropout(self._ffn(src)))


class DecoderLayer(nn.Module):
    def __init__(self, d_model, nhead, dim_feedforward, dropout, normalize_before):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.normalize_before = normalize_before

    def _ffn(self, x):
        return self.linear2(self.dropout(F.relu(self.linear1(x))))

    def forward(self, tgt, memory, pos, query_pos):
        if self.normalize_before:
            x = self.norm1(tgt)
            q = k = _with_pos(x, query_pos)
            tgt = tgt + self.dropout(self.self_attn(q, k, x, need_weights=False)[0])
            x = self.norm2(tgt)
            attn = self.cross_attn(
                _with_pos(x, query_pos), _with_pos(memory, pos), memory, need_weights=False
            )[0]
            tgt = tgt + self.dropout(attn)
            return tgt + self.dropout(self._ffn(self.norm3(tgt)))
        q = k = _with_pos(tgt, query_pos)
        tgt = self.norm1(tgt + self.dropout(self.self_attn(q, k, tgt, need_weights=False)[0]))
        attn = self.cross_attn(
            _with_pos(tgt, query_pos), _with_pos(memory, pos), memory, need_weights=False
        )[0]
        tgt = self.norm2(tgt + self.dropout(attn))
        return self.norm3(tgt + self.dropout(self._ffn(tgt)))


class PrompterTransformer(nn.Module):
    """Encoder-decoder transformer of the query prompter (DETR's layout, batch-first tensors).

    Args:
        d_model, nhead, dim_feedforward, dropout: layer sizes.
        num_encoder_layers, num_decoder_layers: depths (6 and 6 in the paper).
        normalize_before: pre-norm layers if True, post-norm (the paper's) if False.
    """

    def __init__(
        self,
        d_model: int = 256,
        nhead: int = 8,
        num_encoder_layers: int = 6,
        num_decoder_layers: int = 6,
        dim_feedforward: int = 1024,
        dropout: float = 0.0,
        normalize_before: bool = False,
    ):
        super().__init__()
        enc = EncoderLayer(d_model, nhead, dim_feedforward, dropout, normalize_before)
        dec = DecoderLayer(d_model, nhead, dim_feedforward, dropout, normalize_before)
        self.encoder_layers = _clones(enc, num_encoder_layers)
        self.decoder_layers = _clones(dec, num_decoder_layers)
        # Pre-norm stacks need a final norm on the encoder output; DETR normalises the decoder
        # output in both layouts.
        self.encoder_norm = nn.LayerNorm(d_model) if normalize_before else nn.Identity()
        self.decoder_norm = nn.LayerNorm(d_model)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(
        self, src: Tensor, pos: Tensor, query_pos: Tensor, return_intermediate: bool = False
    ) -> Tensor:
        """
        Args:
            src: (B, C, H, W) feature map.
            pos: (B or 1, C, H, W) positional embedding of ``src``.
            query_pos: (S, C) learned query embeddings.
            return_intermediate: also return every decoder layer's (normalised) output.
        Returns:
            (B, S, C) decoder output embeddings, or (L, B, S, C) for the L decoder layers (the
            last one last) if ``return_intermediate``.
        """
        return self.decode(self.encode(src, pos), pos, query_pos, return_intermediate)

    def encode(self, src: Tensor, pos: Tensor) -> Tensor:
        """(B, C, H, W) features and their positions -> (B, HW, C) encoder memory."""
        memory = src.flatten(2).transpose(1, 2)
        pos = pos.flatten(2).transpose(1, 2).expand(src.shape[0], -1, -1)
        for layer in self.encoder_layers:
            memory = layer(memory, pos)
        return self.encoder_norm(memory)

    def decode(
        self,
        memory: Tensor,
        pos: Tensor,
        query_pos: Tensor,
        return_intermediate: bool = False,
        tgt: Optional[Tensor] = None,
    ) -> Tensor:
        """(B, HW, C) memory -> decoder output, as :meth:`forward` returns it.

        ``query_pos`` may also be per image, (B, S, C); ``tgt`` (B, S, C) is the queries' initial
        content (DETR: zeros, the default).
        """
        b = memory.shape[0]
        pos = pos.flatten(2).transpose(1, 2).expand(b, -1, -1)
        if query_pos.dim() == 2:
            query_pos = query_pos.unsqueeze(0).expand(b, -1, -1)
        if tgt is None:
            tgt = torch.zeros_like(query_pos)
        intermediate = []
        for layer in self.decoder_layers:
            tgt = layer(tgt, memory, pos, query_pos)
            if return_intermediate:
                intermediate.append(self.decoder_norm(tgt))
        if return_intermediate:
            return torch.stack(intermediate)
        return self.decoder_norm(tgt)
