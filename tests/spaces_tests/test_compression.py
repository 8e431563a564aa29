"""Compression after training: pruning reaches the asked sparsity, a quantized model predicts as
the float one, and a trial reports and checkpoints its compressed model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from spaces import Strategy
from spaces.compression import Prune, Quantize, prunable
from tests.trainables_tests.test_teacher import STUDENTS, TOY_DATA, tiny_config
from trainables.footprint import parameter_counts, saved_bytes
from trainables.models import build_text_classifier


def classifier(encoder: str) -> nn.Module:
    torch.manual_seed(0)
    return build_text_classifier(Strategy.from_config(tiny_config(STUDENTS[encoder])), vocab_size=200, num_classes=3).eval()


@pytest.mark.parametrize("encoder", list(STUDENTS))
@pytest.mark.parametrize("amount", [0.0, 0.3, 0.9])
def test_pruning_reaches_the_asked_sparsity(encoder: str, amount: float) -> None:
    model = classifier(encoder)
    before = torch.cat([getattr(module, name).detach().flatten().clone() for module, name in prunable(model)])
    zero_before = int((before == 0).sum())  # the padding row
    compression = Prune(amount=amount, finetune=False)
    assert compression.compress(model) is model
    compression.finalize(model)
    weights = [getattr(module, name) for module, name in prunable(model)]
    total = sum(w.numel() for w in weights)
    zeros = sum(int((w == 0).sum()) for w in weights)
    assert abs(zeros - max(round(amount * total), zero_before)) <= 1
    assert not any(name.endswith("_orig") for name, _ in model.named_parameters())  # masks made permanent
    # Global magnitude: every entry kept was at least as large as any entry pruned, across all layers.
    after = torch.cat([w.detach().flatten() for w in weights])
    if 0 < amount:
        assert before[after == 0].abs().max() <= before[after != 0].abs().min()
    _, nonzero = parameter_counts(model)
    biases = sum(p.numel() for p in model.parameters()) - total
    assert nonzero <= total - zeros + biases


@pytest.mark.parametrize("encoder", list(STUDENTS))
def test_a_quantized_model_predicts_as_the_float_one(encoder: str) -> None:
    model = classifier(encoder)
    quantized = Quantize().compress(model)
    assert quantized is not model and not any(isinstance(m, (nn.Linear, nn.LSTM)) and type(m).__module__.startswith("torch.nn.modules") for m in quantized.modules())
    tokens = torch.randint(2, 200, (64, 12))
    mask = torch.ones_like(tokens, dtype=torch.bool)
    with torch.no_grad():
        expected, got = model(tokens, mask), quantized(tokens, mask)
    assert torch.allclose(got, expected, atol=0.05 * expected.abs().max().item() + 1e-3)
    assert (got.argmax(-1) == expected.argmax(-1)).float().mean() >= 0.95
    if encoder == "bilstm":  # the LSTM and the output layer hold most weights outside the embeddings
        assert saved_bytes(quantized) < saved_bytes(model)


@pytest.mark.parametrize("compression", [
    {"name": "prune", "prune": {"amount": 0.5, "finetune": True}},
    {"name": "prune", "prune": {"amount": 0.5, "finetune": False}},
    {"name": "quantize"},
])
def test_a_trial_reports_and_saves_its_compressed_model(tmp_path: Path, compression: dict[str, Any]) -> None:
    from search.config import parse_data_section
    from tests.conftest import write_sentiment_csv
    from trainables.runner import TrialSettings, load_state
    from trainables.text_classification import TASK

    (tmp_path / "toy").mkdir()
    write_sentiment_csv(tmp_path / "toy", {"train": 200, "validation": 60, "test": 60})
    data = TASK.load_data(parse_data_section(TASK.name, TOY_DATA, "toy"), str(tmp_path), 0)
    config = {**tiny_config(STUDENTS["bilstm"]), "compression": compression}
    settings = TrialSettings(metric="accuracy", mode="max", max_epochs=2, latency_budget_s=0.05)
    reports: list[dict[str, Any]] = []
    saved = tmp_path / "checkpoint"

    def report(metrics: dict[str, Any], checkpoint_dir: str | None) -> None:
        reports.append(metrics)
        if checkpoint_dir:
            saved.mkdir(exist_ok=True)
            (saved / "state.pt").write_bytes((Path(checkpoint_dir) / "state.pt").read_bytes())

    TASK.trainable(config, data, settings, report)
    first, last = reports
    assert "uncompressed_accuracy" not in first and last["uncompressed_model_params"] == first["model_params"]
    assert last["model_params"] == first["model_params"]
    if compression["name"] == "prune":
        assert last["nonzero_params"] < 0.6 * first["nonzero_params"]
        weights = load_state(str(saved))["model"]
        assert sum(int((w == 0).sum()) for w in weights.values()) >= 0.5 * sum(w.numel() for k, w in weights.items() if "weight" in k and w.dim() >= 2) - 1
    else:
        assert last["nonzero_params"] == first["nonzero_params"] and last["model_bytes"] < first["model_bytes"]
    # The saved checkpoint, scored as the best trial is, gives the compressed model's dev score.
    assert TASK.evaluate_checkpoint(config, data, settings, str(saved), "validation")["accuracy"] == pytest.approx(last["accuracy"])
