"""Building blocks of the prompter diagnostics (``tools/research/diagnose_prompter.py``, whose
figures docs/BENCHMARK.md cites), importable so that they are tested without loading the tool.

* :func:`oracle_embedding`: a perfectly semantic stand-in for an image embedding, the ground-truth
  part label map one-hot encoded, area-downsampled to the embedding's grid and projected to its
  channels by a fixed matrix (``--input oracle``): it tells weak features from slow
  set-prediction learning.
* :class:`AttentionOverCells`: the attention probe of ``probe`` (transformer encoder layers over
  the embedding's cells).
"""

import torch
from torch.nn import functional as F

__all__ = ["AttentionOverCells", "oracle_embedding"]


def oracle_embedding(label_map: torch.Tensor, num_labels: int, projection: torch.Tensor, side: int):
    """(D, side, side): the one-hot label map, area-downsampled, projected by ``projection``.

    Args:
        label_map: (H, W) int64 labels in [0, num_labels).
        num_labels: the number of labels (parts and background).
        projection: (D, num_labels) the fixed projection to D channels.
        side: the embedding grid's side.
    """
    onehot = F.one_hot(label_map, num_labels).permute(2, 0, 1).float()[None]
    return torch.einsum("dc,chw->dhw", projection, F.adaptive_avg_pool2d(onehot, side)[0])


class AttentionOverCells(torch.nn.Module):
    """(B, D, H, W) -> (B, D, H, W) through transformer encoder layers over the H*W cells."""

    def __init__(self, dim, num_layers):
        super().__init__()
        layer = torch.nn.TransformerEncoderLayer(dim, 8, 2 * dim, dropout=0.0, batch_first=True)
        self.layers = torch.nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)

    def forward(self, x):
        b, d, h, w = x.shape
        return self.layers(x.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(b, d, h, w)
