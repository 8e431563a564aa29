"""What a trained model costs to ship: its parameters, its saved size and its CPU latency.

Every trial reports them (`trainables.runner`), measured once (the architecture does not change
between epochs) and again after compression (`spaces.compression`):

- model_params: the model's parameters, trained or frozen (`param_count` stays the trained ones;
  quantization keeps the count: its int8 weights are counted as the float ones they replace);
- nonzero_params: those not zero (pruning's effect);
- model_bytes: the saved weights' size: safetensors, as `search train` writes them; a dynamically
  quantized model as `torch.save` writes its state (safetensors holds no quantized tensors);
- latency_ms_b1, latency_ms_b32: CPU milliseconds per example at batch size 1 and 32, the median of
  repeated timed forward passes after warm-up, within a time bound.
"""

from __future__ import annotations

import copy
import io
import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

LATENCY_BATCH_SIZES = (1, 32)
WARMUP_RUNS = 2
MIN_RUNS, MAX_RUNS = 3, 50


def _is_quantized(state: Mapping[str, Any]) -> bool:
    return any(not isinstance(value, torch.Tensor) or value.is_quantized for value in state.values())


def parameter_counts(model: nn.Module) -> tuple[int, int]:
    """(parameters, non-zero parameters) of a float model, trained or frozen."""
    params = [p.detach() for p in model.parameters()]
    return sum(p.numel() for p in params), sum(int(torch.count_nonzero(p)) for p in params)


def saved_bytes(model: nn.Module) -> int:
    """The size of the model's saved weights (see the module docstring for the format)."""
    state = model.state_dict()
    if _is_quantized(state):
        buffer = io.BytesIO()
        torch.save(state, buffer)
        return buffer.tell()
    from safetensors.torch import save

    return len(save({name: tensor.detach().to("cpu", copy=True).contiguous() for name, tensor in state.items()}))


@torch.inference_mode()
def latency_ms(run: Callable[[], Any], batch_size: int, budget_s: float) -> float:
    """Milliseconds per example: the median of timed calls of `run` (one batch of `batch_size`)
    after warm-up, as many as fit in `budget_s` (at least MIN_RUNS, at most MAX_RUNS)."""
    for _ in range(WARMUP_RUNS):
        run()
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(times) < MIN_RUNS or (len(times) < MAX_RUNS and time.perf_counter() < deadline):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000 / batch_size


def measure(
    model: nn.Module, forward: Callable[[nn.Module, Any], Any], example_batch: Callable[[int], Any], budget_s: float = 1.0,
    *, counted: nn.Module | None = None,
) -> dict[str, float]:
    """The model's footprint (the module docstring's keys). `example_batch(n)` gives a batch of n
    examples; `forward(model, batch)` runs the model on it. Latency is measured on a CPU copy of the
    model in eval mode (a GPU trial's model stays where it is), `budget_s` per batch size; 0 skips it.
    `counted`: the float model whose parameters are counted (a quantized model's packed weights are
    the same number of parameters, in int8)."""
    params, nonzero = parameter_counts(counted if counted is not None else model)
    footprint: dict[str, float] = {"model_params": params, "nonzero_params": nonzero, "model_bytes": saved_bytes(model)}
    if budget_s <= 0:
        return footprint
    on_cpu = model if _on_cpu(model) else copy.deepcopy(model).to("cpu")
    was_training = on_cpu.training
    on_cpu.eval()
    try:
        for size in LATENCY_BATCH_SIZES:
            batch = example_batch(size).to(torch.device("cpu"))
            footprint[f"latency_ms_b{size}"] = latency_ms(lambda: forward(on_cpu, batch), len(batch), budget_s)
    finally:
        on_cpu.train(was_training)
    return footprint


def _on_cpu(model: nn.Module) -> bool:
    return all(t.device.type == "cpu" for t in (*model.parameters(), *model.buffers()))
