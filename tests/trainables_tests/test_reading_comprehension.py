"""BiDAF, its span loss and decoding, batching and the reading-comprehension task on the trial runner (no Ray), on real SQuAD text."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from spaces import Strategy
from spaces.losses import LOSSES
from trainables.optimization import Precision
from trainables.runner import TrialSettings
from trainables.bidaf import SpanScores, best_spans, build_bidaf
from trainables.data import ReadingComprehensionData, ReadingComprehensionDataSpec, SquadFiles, load_reading_comprehension
from trainables.reading_comprehension import TASK, batches, evaluate_split, train_reading_comprehension
from trainables.task import TrialModel

DEV_FILE = "squad/dev-v1.1.json.gz"


@pytest.fixture(scope="module")
def small_squad(shared_data: Path) -> ReadingComprehensionData:
    if not (shared_data / DEV_FILE).exists():
        pytest.skip(f"SQuAD dev file not found at {shared_data / DEV_FILE}")
    spec = ReadingComprehensionDataSpec(
        "squad", local=SquadFiles({"train": DEV_FILE}), carve={"validation": 0.1, "test": 0.1},
        max_examples={"train": 160, "validation": 120, "test": 60}, max_context_tokens=120,
    )
    return load_reading_comprehension(spec, shared_data, seed=0)


def reading_comprehension_config(loss: str = "cross_entropy", infonce: bool = True, char_encoder: str = "cnn", **loss_params: float) -> dict:
    char_params = {"cnn": {"char_dim": 8, "filters": 8}, "lstm": {"char_dim": 8, "hidden": 4}, "none": {}}[char_encoder]
    return {
        "char_encoder": {"name": char_encoder, char_encoder: char_params},
        "encoder": {"name": "bilstm", "bilstm": {"hidden": 8, "layers": 1}},
        "addons": {"mhsa": {"enabled": True, "heads": 2}, "layernorm": {"enabled": True}},
        "loss": {"name": loss, loss: loss_params},
        "loss_terms": {"infonce": {"enabled": infonce, "weight": 0.1, "temperature": 0.2}},
        "decoder": {"name": "best_span", "best_span": {"max_answer_length": 15}},
        "regularizers": {"dropout": {"enabled": True, "p": 0.1}},
        "optimizer": {"name": "adam", "adam": {"lr": 0.005}},
        "schedule": {"name": "constant"},
        "train": {"batch_size": 16},
        "model": {"embedding_dim": 16},
    }


def brute_force_spans(start: torch.Tensor, end: torch.Tensor, mask: torch.Tensor, max_length: int) -> list[tuple[int, int]]:
    best = []
    for row in range(len(start)):
        length = int(mask[row].sum())
        top, chosen = float("-inf"), (-1, -1)
        for i in range(length):
            for j in range(i, min(i + max_length, length)):
                if start[row, i] + end[row, j] > top:
                    top, chosen = float(start[row, i] + end[row, j]), (i, j)
        best.append(chosen)
    return best


@pytest.mark.parametrize("max_length", [1, 3, 15, 40])
def test_batched_span_decoding_matches_brute_force(max_length: int) -> None:
    generator = torch.Generator().manual_seed(max_length)
    lengths = torch.tensor([1, 5, 17, 30, 30, 9])
    mask = torch.arange(30)[None, :] < lengths[:, None]
    start = torch.randn(len(lengths), 30, generator=generator)
    end = torch.randn(len(lengths), 30, generator=generator)
    # Padding scores are huge so that a decoder peeking at padding would be caught.
    start, end = start.masked_fill(~mask, 100.0), end.masked_fill(~mask, 100.0)
    starts, ends = best_spans(start, end, mask, max_length)
    assert list(zip(starts.tolist(), ends.tolist())) == brute_force_spans(start, end, mask, max_length)
    assert ((ends - starts) < max_length).all() and (starts <= ends).all() and (ends < lengths).all()


def test_batches_hold_each_questions_window_and_relative_answer(small_squad: ReadingComprehensionData) -> None:
    split = small_squad.train
    questions = np.flatnonzero(split.answer_start >= 0)
    seen = []
    for batch in batches(split, small_squad, questions, 16, shuffle=True, rng=np.random.default_rng(0)):
        for row, question in enumerate(batch.index):
            paragraph = split.paragraph[question]
            first = split.context_offsets[paragraph] + split.window_start[question]
            length = int(batch.context_mask[row].sum())
            assert length == min(split.context_offsets[paragraph + 1] - first, small_squad.max_context_tokens)
            types = split.context_types[first:first + length]
            assert batch.context_words[row, :length].tolist() == small_squad.type_words[types].tolist()
            assert (batch.context_words[row, length:] == 0).all()
            width = batch.context_chars.shape[-1]
            assert batch.context_chars[row, :length].tolist() == small_squad.type_chars[types][:, :width].tolist()
            q_types = split.question_types[split.question_offsets[question]:split.question_offsets[question + 1]]
            assert batch.question_words[row, : len(q_types)].tolist() == small_squad.type_words[q_types].tolist()
            assert batch.start[row] == split.answer_start[question] - split.window_start[question] and batch.end[row] >= batch.start[row]
        seen += batch.index.tolist()
    assert sorted(seen) == sorted(questions.tolist())


class OracleModel(torch.nn.Module):
    """Puts all probability on the gold span of each question (a uniform guess where there is none)."""

    def __init__(self) -> None:
        super().__init__()
        self.batch = None

    def forward(self, context_words: torch.Tensor, *rest: torch.Tensor) -> SpanScores:
        mask = rest[1]
        start = torch.where(mask, -20.0, float("-inf"))
        end = start.clone()
        rows = torch.nonzero(self.batch.start >= 0).squeeze(1)
        start[rows, self.batch.start[rows]] = 0.0
        end[rows, self.batch.end[rows]] = 0.0
        vector = torch.zeros(len(mask), 2)
        return SpanScores(start.log_softmax(-1), end.log_softmax(-1), vector, vector)


def test_predicting_the_gold_span_reads_back_the_gold_text(small_squad: ReadingComprehensionData, monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole prediction path (relative span -> window -> characters -> text -> EM/F1) on real SQuAD."""
    import trainables.reading_comprehension as rc

    model = OracleModel()
    real_batches = rc.batches

    def remembering(*args, **kwargs):
        for batch in real_batches(*args, **kwargs):
            model.batch = batch
            yield batch

    monkeypatch.setattr(rc, "batches", remembering)
    split = small_squad.validation
    metrics = evaluate_split(model, split, small_squad, torch.device("cpu"), Precision(torch.device("cpu"), False), max_answer_length=30)
    answerable = float((split.answer_start >= 0).mean())
    assert metrics["exact_match"] >= answerable - 0.02 and metrics["f1"] >= metrics["exact_match"]
    assert metrics["loss"] < 1e-3


@pytest.mark.parametrize(("loss", "params"), [("cross_entropy", {}), ("focal", {"gamma": 2.0}), ("ghm", {"bins": 10, "momentum": 0.5}), ("label_smoothing", {"epsilon": 0.1})])
def test_every_loss_trains_bidaf_and_ignores_rows_without_a_span(small_squad: ReadingComprehensionData, loss: str, params: dict) -> None:
    torch.manual_seed(0)
    strategy = Strategy.from_config(reading_comprehension_config(loss, **params))
    model = build_bidaf(strategy, len(small_squad.words), len(small_squad.chars))
    trial = TrialModel(strategy, model, LOSSES[loss].build(small_squad.max_context_tokens, **params))
    batch = next(batches(small_squad.train, small_squad, np.arange(8), 8, shuffle=False))
    scores = TASK.forward(model, batch)
    assert scores.start_log_p.shape == batch.context_mask.shape
    value = TASK.loss(trial, scores, batch)
    assert value.dim() == 0 and torch.isfinite(value)
    value.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    if loss != "ghm":  # GHM's weights depend on the whole batch
        dropped = batch.start.clone()
        dropped[0] = -1
        alone = TASK.loss(trial, _rows(scores, slice(1, None)), _batch_rows(batch, slice(1, None)))
        with_ignored = TASK.loss(trial, scores, dataclasses.replace(batch, start=dropped))
        assert with_ignored.item() == pytest.approx(alone.item(), rel=1e-5)


def _rows(scores: SpanScores, rows: slice) -> SpanScores:
    return SpanScores(scores.start_log_p[rows], scores.end_log_p[rows], scores.question_vector[rows], scores.context_vector[rows])


def _batch_rows(batch, rows: slice):
    return dataclasses.replace(batch, **{f.name: getattr(batch, f.name)[rows] for f in dataclasses.fields(batch)})


def test_the_loop_reports_em_f1_and_loss_each_epoch_and_its_checkpoint_scores_test(small_squad: ReadingComprehensionData, tmp_path: Path) -> None:
    reports: list[dict] = []

    def report(metrics: dict, checkpoint_dir: str | None) -> None:
        reports.append(metrics)
        if checkpoint_dir:
            (tmp_path / "state.pt").write_bytes((Path(checkpoint_dir) / "state.pt").read_bytes())

    settings = TrialSettings(metric="f1", mode="max", max_epochs=2)
    config = reading_comprehension_config("focal", gamma=1.0)
    train_reading_comprehension(config, small_squad, settings, report)
    assert [r["epoch"] for r in reports] == [1, 2]
    for metrics in reports:
        assert 0.0 <= metrics["exact_match"] <= metrics["f1"] <= 1.0 and metrics["loss"] > 0 and metrics["train_contrastive_loss"] > 0
    assert reports[1]["train_loss"] < reports[0]["train_loss"]
    test = TASK.evaluate_checkpoint(config, small_squad, settings, str(tmp_path), "test")
    assert set(test) == {"exact_match", "f1", "loss"}
    dev_again = TASK.evaluate_checkpoint(config, small_squad, settings, str(tmp_path), "validation")
    assert dev_again["f1"] == pytest.approx(reports[-1]["f1"])


def test_adversarial_training_and_weight_averaging_train_bidaf(small_squad: ReadingComprehensionData) -> None:
    config = reading_comprehension_config("cross_entropy") | {
        "adversarial": {"name": "fgm", "fgm": {"epsilon": 0.5}},
        "averaging": {"name": "swa", "swa": {"start_fraction": 0.5, "lr": 0.001}},
    }
    reports: list[dict] = []
    train_reading_comprehension(config, small_squad, TrialSettings(metric="f1", mode="max", max_epochs=2), lambda m, d: reports.append(m))
    assert len(reports) == 2 and reports[-1]["lr"] == pytest.approx(0.001) and reports[-1]["loss"] > 0
