"""The prompter diagnostics' building blocks (wps_sam.prompter_diagnostics, used by
tools/research/diagnose_prompter.py): the oracle input, a label map as a (D, E, E) input, and the
attention probe."""

import torch

from wps_sam.prompter_diagnostics import AttentionOverCells, oracle_embedding


def test_oracle_embedding_is_the_projected_label_fractions_per_cell():
    labels = torch.full((8, 8), 2, dtype=torch.int64)  # background = 2 of 3 labels
    labels[:4, :4] = 0  # part 0 fills the top-left cell of a 2x2 grid
    labels[4:, 4:6] = 1  # part 1 covers half of the bottom-right cell
    projection = torch.randn(5, 3)
    emb = oracle_embedding(labels, 3, projection, side=2)
    assert emb.shape == (5, 2, 2)
    torch.testing.assert_close(emb[:, 0, 0], projection[:, 0])
    torch.testing.assert_close(emb[:, 0, 1], projection[:, 2])
    torch.testing.assert_close(emb[:, 1, 1], 0.5 * projection[:, 1] + 0.5 * projection[:, 2])


def test_attention_probe_keeps_the_cell_grid():
    x = torch.randn(2, 16, 4, 3)
    out = AttentionOverCells(16, 1)(x)
    assert out.shape == x.shape and not torch.allclose(out, x)
