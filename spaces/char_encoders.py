"""Character-level word encoders: characters [N, L] (0 = padding) -> one vector per word [N, D].

They give a tagger the spelling of rare and unseen words (capitals, suffixes, digits), as in
Ma & Hovy (2016, CNN) and Lample et al. (2016, LSTM). "none" uses word embeddings alone.
`cnn` and `lstm` support `WORDS` only: beside a pretrained encoder's sub-words a task offers them
nothing, so only `none` goes with the `transformer` encoder.
"""

from __future__ import annotations

import torch
from torch import nn

from spaces._base import Categorical, Component, Int, at_least, is_positive_int, registry
from spaces.encoders import WORDS


class CharCNN(nn.Module):
    """Character embeddings -> one convolution -> max over the word's characters."""

    def __init__(self, num_chars: int, *, char_dim: int, filters: int, kernel: int = 3) -> None:
        super().__init__()
        self.embedding = nn.Embedding(num_chars, char_dim, padding_idx=0)
        self.conv = nn.Conv1d(char_dim, filters, kernel, padding=kernel // 2)
        self.output_dim = filters

    def forward(self, chars: torch.Tensor) -> torch.Tensor:
        mask = chars != 0
        # Pooled in the convolution's own layout [N, filters, L]: transposing back to [N, L, filters] first
        # made masked_fill and max work on a strided view and gave conv backward a non-contiguous gradient.
        x = self.conv(self.embedding(chars).transpose(1, 2))[:, :, : chars.shape[1]]
        x = x.masked_fill(~mask.unsqueeze(1), torch.finfo(x.dtype).min)
        # Padding words (no characters at all) would keep the fill value: give them zeros instead.
        return torch.where(mask.any(dim=1, keepdim=True), x.max(dim=2).values, torch.zeros((), dtype=x.dtype, device=x.device))


class CharLSTM(nn.Module):
    """Character embeddings -> BiLSTM; the word is the last forward and first backward state."""

    def __init__(self, num_chars: int, *, char_dim: int, hidden: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(num_chars, char_dim, padding_idx=0)
        self.lstm = nn.LSTM(char_dim, hidden, batch_first=True, bidirectional=True)
        self.output_dim = 2 * hidden

    def forward(self, chars: torch.Tensor) -> torch.Tensor:
        lengths = (chars != 0).sum(dim=1)
        out = chars.new_zeros((chars.shape[0], self.output_dim), dtype=self.embedding.weight.dtype)
        present = lengths > 0
        if not bool(present.any()):
            return out
        packed = nn.utils.rnn.pack_padded_sequence(
            self.embedding(chars[present]), lengths[present].cpu(), batch_first=True, enforce_sorted=False
        )
        _, (h_n, _) = self.lstm(packed)
        out = out.to(h_n.dtype)
        out[present] = torch.cat([h_n[0], h_n[1]], dim=-1)
        return out


_CHAR_DIM = Categorical((25, 30, 50), allowed=is_positive_int, doc="a character embedding size (positive integer)")

CHAR_ENCODERS = registry(
    "char_encoder",
    "choice",
    [
        Component(
            "cnn",
            {"char_dim": _CHAR_DIM, "filters": Int(25, 100, step=25, limits=at_least(1), doc="a number of character filters")},
            CharCNN,
            "character CNN, max-pooled (Ma & Hovy 2016)",
            frozenset({WORDS}),
        ),
        Component(
            "lstm",
            {"char_dim": _CHAR_DIM, "hidden": Int(25, 100, step=25, limits=at_least(1), doc="a character LSTM size per direction")},
            CharLSTM,
            "character BiLSTM, final states (Lample et al. 2016)",
            frozenset({WORDS}),
        ),
        Component("none", {}, None, "word embeddings only"),
    ],
)
