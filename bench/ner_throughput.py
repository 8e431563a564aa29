"""Training throughput of the BiLSTM-CRF trainable against a plain PyTorch loop, on WNUT-17.

Engine side: the trial runner on the NER task (`trainables.ner.TASK`), one epoch per call, timed by the `train_seconds` and
`examples_per_second` it reports (sentences per second) (training only; the dev evaluation after the epoch is not timed).
Reference side: the same model size written the way one would without the engine (its own model
class, a textbook batched CRF forward algorithm, pad_sequence padding, Adam), in this file.

Both sides see the same sentences in the same batch order and run alternately in one process
(warm-up, then rounds of [engine, reference]), so background load hits both alike.

    python bench/ner_throughput.py [--rounds 3] [--sentences N] [--threads 1] [--data-root DIR]

The last line is `RESULT engine_sps=... reference_sps=... ratio=... ...` for scripts.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # runnable as `python bench/ner_throughput.py` without installing the project

import datasets  # noqa: E402

from trainables.runner import TrialSettings  # noqa: E402
from trainables.crf import CRF, transition_constraints  # noqa: E402
from trainables.data import ConllSource, EncodedSentences, NerData, NerDataSpec, load_ner  # noqa: E402
from trainables.ner import TASK, batches  # noqa: E402

WNUT_FILES = {
    "train": "wnut17/wnut17train.conll",
    "validation": "wnut17/emerging.dev.conll",
    "test": "wnut17/emerging.test.annotated",
}
SEED = 0
BATCH_SIZE = 32
# The catalogue's BiLSTM-CRF size; the reference model below is built from the same numbers.
WORD_DIM, CHAR_DIM, CHAR_FILTERS, HIDDEN, DROPOUT, LR = 100, 30, 50, 256, 0.5, 1e-3


def engine_config() -> dict[str, Any]:
    """BiLSTM-CRF at the catalogue size, no add-ons, in the nested shape a trial receives."""
    return {
        "char_encoder": {"name": "cnn", "cnn": {"char_dim": CHAR_DIM, "filters": CHAR_FILTERS}},
        "encoder": {"name": "bilstm", "bilstm": {"hidden": HIDDEN, "layers": 1}},
        "addons": {"mhsa": {"enabled": False}, "layernorm": {"enabled": False}},
        "head": {"name": "crf"},
        "loss": {"name": "cross_entropy", "cross_entropy": {}},
        "regularizers": {"dropout": {"enabled": True, "p": DROPOUT}},
        "optimizer": {"name": "adam", "adam": {"lr": LR}},
        "schedule": {"name": "constant"},
        "train": {"batch_size": BATCH_SIZE},
        "model": {"embedding_dim": WORD_DIM},
    }


# ---- data ---------------------------------------------------------------------------------------


def head(split: EncodedSentences, count: int) -> EncodedSentences:
    """The first `count` sentences of a split (slices of the ragged arrays, no copy)."""
    count = min(count, len(split))
    tokens = int(split.offsets[count])
    return EncodedSentences(
        words=split.words[:tokens],
        offsets=split.offsets[: count + 1],
        chars=split.chars[: int(split.char_offsets[tokens])],
        char_offsets=split.char_offsets[: tokens + 1],
        tags=split.tags[:tokens],
    )


def load_wnut(data_root: Path, sentences: int | None) -> NerData:
    missing = [path for path in WNUT_FILES.values() if not (data_root / path).is_file()]
    if missing:
        print(f"error: WNUT-17 not found under {data_root} (missing {', '.join(missing)}); pass --data-root DIR", file=sys.stderr)
        sys.exit(2)
    datasets.disable_progress_bars()
    spec = NerDataSpec(name="wnut17", local=ConllSource(files=WNUT_FILES, scheme="iob2"), scheme="iob2")
    data = load_ner(spec, data_root, seed=SEED)
    train = data.train if sentences is None else head(data.train, sentences)
    return dataclasses.replace(data, train=train)


# ---- engine side --------------------------------------------------------------------------------


def engine_epoch(data: NerData, threads: int) -> tuple[float, float, int]:
    """One epoch of the trainable's own loop on a fresh model: (train seconds, sentences/s, params)."""
    reported: dict[str, Any] = {}
    settings = TrialSettings(metric="f1", mode="max", max_epochs=1, seed=SEED, threads=threads, checkpoint=False)
    TASK.trainable(engine_config(), data, settings, report=lambda metrics, _directory: reported.update(metrics))
    return reported["train_seconds"], reported["examples_per_second"], int(reported["param_count"])


# ---- reference side -----------------------------------------------------------------------------


class PlainBiLstmCrf(nn.Module):
    """Word embedding + char CNN (max-pooled) -> BiLSTM -> dropout -> linear -> linear-chain CRF."""

    def __init__(self, num_words: int, num_chars: int, num_tags: int) -> None:
        super().__init__()
        self.word_embedding = nn.Embedding(num_words, WORD_DIM, padding_idx=0)
        self.char_embedding = nn.Embedding(num_chars, CHAR_DIM, padding_idx=0)
        self.char_conv = nn.Conv1d(CHAR_DIM, CHAR_FILTERS, kernel_size=3, padding=1)
        self.lstm = nn.LSTM(WORD_DIM + CHAR_FILTERS, HIDDEN, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(DROPOUT)
        self.projection = nn.Linear(2 * HIDDEN, num_tags)
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags).uniform_(-0.1, 0.1))
        self.start = nn.Parameter(torch.empty(num_tags).uniform_(-0.1, 0.1))
        self.end = nn.Parameter(torch.empty(num_tags).uniform_(-0.1, 0.1))

    def emissions(self, words: torch.Tensor, chars: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        batch, length, width = chars.shape
        flat = chars.view(batch * length, width)
        spelled = self.char_conv(self.char_embedding(flat).transpose(1, 2))  # [B*T, F, L]
        # Padding characters must not win the max; padding words are packed away below anyway.
        spelled = spelled.masked_fill((flat == 0).unsqueeze(1), -1e4).max(dim=2).values.view(batch, length, -1)
        x = torch.cat([self.word_embedding(words), spelled], dim=-1)
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        output, _ = nn.utils.rnn.pad_packed_sequence(self.lstm(packed)[0], batch_first=True, total_length=length)
        return self.projection(self.dropout(output))

    def nll(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per-sentence -log p(tags): forward algorithm (batched, loop over time) minus the gold score."""
        log_alpha = self.start + emissions[:, 0]
        for t in range(1, emissions.shape[1]):
            step = torch.logsumexp(log_alpha.unsqueeze(2) + self.transitions, dim=1) + emissions[:, t]
            log_alpha = torch.where(mask[:, t : t + 1], step, log_alpha)
        log_z = torch.logsumexp(log_alpha + self.end, dim=1)

        weights = mask.to(emissions.dtype)
        gold = emissions.gather(2, tags.unsqueeze(2)).squeeze(2).mul(weights).sum(dim=1)
        gold = gold + (self.transitions[tags[:, :-1], tags[:, 1:]] * weights[:, 1:]).sum(dim=1)
        last = tags.gather(1, (mask.sum(dim=1) - 1).unsqueeze(1)).squeeze(1)
        return log_z - (gold + self.start[tags[:, 0]] + self.end[last])


@dataclasses.dataclass
class PlainSentences:
    """Per-sentence tensors, made once before training (as one would with a Dataset)."""

    words: list[torch.Tensor]
    chars: list[torch.Tensor]  # [tokens, longest word of the sentence]
    tags: list[torch.Tensor]


def plain_sentences(split: EncodedSentences) -> PlainSentences:
    words, chars, tags = [], [], []
    for start, end in zip(split.offsets[:-1], split.offsets[1:]):
        words.append(torch.from_numpy(split.words[start:end].astype(np.int64)))
        tags.append(torch.from_numpy(split.tags[start:end].astype(np.int64)))
        spans = [split.chars[split.char_offsets[token] : split.char_offsets[token + 1]] for token in range(start, end)]
        matrix = np.zeros((len(spans), max(map(len, spans))), dtype=np.int64)
        for row, span in enumerate(spans):
            matrix[row, : len(span)] = span
        chars.append(torch.from_numpy(matrix))
    return PlainSentences(words, chars, tags)


def reference_epoch(sentences: PlainSentences, num_words: int, num_chars: int, num_tags: int) -> tuple[float, float, int]:
    """One epoch of the plain loop on a fresh model: (train seconds, sentences/s, params)."""
    torch.manual_seed(SEED)
    model = PlainBiLstmCrf(num_words, num_chars, num_tags)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    params = sum(p.numel() for p in model.parameters())
    # Same shuffle as the engine's first epoch, so both sides pad the same batches.
    order = np.random.default_rng(SEED).permutation(len(sentences.words))

    model.train()
    started = time.perf_counter()
    loss_total = 0.0
    for first in range(0, len(order), BATCH_SIZE):
        index = order[first : first + BATCH_SIZE]
        words = nn.utils.rnn.pad_sequence([sentences.words[i] for i in index], batch_first=True)
        tags = nn.utils.rnn.pad_sequence([sentences.tags[i] for i in index], batch_first=True)
        lengths = torch.tensor([len(sentences.words[i]) for i in index])
        length, width = words.shape[1], max(sentences.chars[i].shape[1] for i in index)
        chars = torch.stack([F.pad(sentences.chars[i], (0, width - sentences.chars[i].shape[1], 0, length - len(sentences.chars[i]))) for i in index])
        mask = torch.arange(length)[None, :] < lengths[:, None]

        loss = model.nll(model.emissions(words, chars, lengths), tags, mask).sum() / lengths.sum()  # per token, as the engine
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_total += loss.item() * len(index)  # read back every batch, as the engine's loop does
    seconds = time.perf_counter() - started
    return seconds, len(order) / seconds, params


# ---- CRF batching check -------------------------------------------------------------------------


def crf_timings(data: NerData, repeats: int = 5) -> dict[str, float]:
    """Seconds of one forward+backward on a real batch of 32 (random emissions): trainables.crf.CRF in one
    call, the same CRF in 32 calls of batch 1, and the reference's textbook CRF in one call."""
    num_tags = len(data.tags)
    crf = CRF(num_tags, transition_constraints(data.tags, data.scheme))
    textbook = PlainBiLstmCrf(2, 2, num_tags)  # only its CRF parameters are used
    batch = next(batches(data.train, BATCH_SIZE, shuffle=True, rng=np.random.default_rng(SEED)))
    tags, mask = batch.tags, batch.mask
    emissions = torch.randn(*tags.shape, num_tags, generator=torch.Generator().manual_seed(SEED), requires_grad=True)
    lengths = mask.sum(dim=1).tolist()

    def batched() -> None:
        crf(emissions, tags, mask, reduction="sum").backward()

    def one_by_one() -> None:
        for row, n in enumerate(lengths):
            crf(emissions[row : row + 1, :n], tags[row : row + 1, :n], mask[row : row + 1, :n], reduction="sum").backward()

    def reference() -> None:
        textbook.nll(emissions, tags.clamp(min=0), mask).sum().backward()

    timings = {}
    for name, run in (("batched", batched), ("one_by_one", one_by_one), ("reference", reference)):
        run()  # warm-up
        best = float("inf")
        for _ in range(repeats):  # best of: the least disturbed by background load
            started = time.perf_counter()
            run()
            best = min(best, time.perf_counter() - started)
        timings[name] = best
    return timings


# ---- main ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=REPO.parent / "shared" / "data", help="folder holding wnut17/")
    parser.add_argument("--rounds", type=int, default=3, help="timed [engine, reference] rounds after the warm-up")
    parser.add_argument("--sentences", type=int, default=None, help="first N training sentences only (default: all)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads for both sides")
    args = parser.parse_args(argv)
    if args.rounds < 1 or (args.sentences is not None and args.sentences < 1) or args.threads < 1:
        parser.error("--rounds, --sentences and --threads must be positive")

    torch.set_num_threads(args.threads)  # the trial runner sets the same for itself
    data = load_wnut(args.data_root, args.sentences)
    sentences = plain_sentences(data.train)
    sizes = (len(data.words), len(data.chars), len(data.tags))
    print(f"data: {len(data.train)} WNUT-17 train sentences, {len(data.train.words)} tokens, {sizes[2]} tags; "
          f"batch {BATCH_SIZE}; threads {args.threads}; torch {torch.__version__}")

    crf = crf_timings(data)
    print(f"crf batched: fwd+bwd on a batch of {BATCH_SIZE} {crf['batched'] * 1e3:.1f} ms vs {BATCH_SIZE} calls of batch 1 "
          f"{crf['one_by_one'] * 1e3:.1f} ms ({crf['one_by_one'] / crf['batched']:.1f}x): one call per batch, not a loop over sentences")
    print(f"crf vs textbook: trainables.crf.CRF {crf['batched'] * 1e3:.2f} ms vs the reference's CRF {crf['reference'] * 1e3:.2f} ms "
          f"per batch fwd+bwd (speed ratio {crf['reference'] / crf['batched']:.2f})")

    speeds: dict[str, list[float]] = {"engine": [], "reference": []}
    params: dict[str, int] = {}
    sides = {"engine": lambda: engine_epoch(data, args.threads), "reference": lambda: reference_epoch(sentences, *sizes)}
    for round_ in range(args.rounds + 1):  # round 0 is the warm-up
        for side, run in sides.items():
            seconds, per_second, params[side] = run()
            label = "warm-up" if round_ == 0 else f"round {round_}"
            print(f"  {side:<9} {label:<8} {seconds:6.1f} s  {per_second:6.1f} sentences/s", flush=True)
            if round_:
                speeds[side].append(per_second)
    if abs(params["engine"] - params["reference"]) > 0.001 * params["reference"]:
        print(f"warning: the models differ in size: engine {params['engine']} vs reference {params['reference']} parameters")

    medians = {side: statistics.median(values) for side, values in speeds.items()}
    ratio = medians["engine"] / medians["reference"]
    paired = statistics.median(e / r for e, r in zip(speeds["engine"], speeds["reference"]))
    print()
    print(f"{'side':<10} {'median sent/s':>13} {'min':>7} {'max':>7} {'params':>10}")
    for side, values in speeds.items():
        print(f"{side:<10} {medians[side]:13.1f} {min(values):7.1f} {max(values):7.1f} {params[side]:10d}")
    print(f"ratio engine/reference: {ratio:.3f} (of medians; median of per-round ratios {paired:.3f})")
    print(f"RESULT engine_sps={medians['engine']:.2f} reference_sps={medians['reference']:.2f} ratio={ratio:.3f} "
          f"rounds={args.rounds} threads={args.threads} params_engine={params['engine']} params_reference={params['reference']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
