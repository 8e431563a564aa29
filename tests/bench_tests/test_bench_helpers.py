"""The benchmarks' shared helpers (no timings here: benchmarks are not tests)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from bench._common import REPO, TreeMemory, parse_result_line, result_line


def test_result_line_reads_back() -> None:
    line = result_line({"ratio": 0.123456, "trials": 24, "gpu": "NVIDIA H100 80GB"})
    assert line == "RESULT ratio=0.1235 trials=24 gpu=NVIDIA_H100_80GB"
    assert parse_result_line(f"progress\n{line}\n") == {"ratio": "0.1235", "trials": "24", "gpu": "NVIDIA_H100_80GB"}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_tree_memory_counts_child_processes() -> None:
    with TreeMemory(interval_s=0.05) as tree:
        child = subprocess.Popen([sys.executable, "-c", "import time; block = bytearray(64 << 20); time.sleep(1.0)"])
        time.sleep(0.8)
        child.wait()
    assert tree.peak_processes >= 2
    assert tree.peak_pss_gib > 60 / 1024  # the child's 64 MiB are in the peak


def test_gpu_packing_refuses_to_run_without_cuda() -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is here: the benchmark would run")
    result = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_packing.py")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 3
    assert "no CUDA GPU" in result.stderr
