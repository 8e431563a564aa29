"""bench/quality.py's own arithmetic: folds, the table row, RESULTS.md (no training here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import quality


def test_folds_partition_the_lines_and_never_train_on_their_test_part() -> None:
    lines = [f"{i % 2} sentence {i}\n".encode() for i in range(23)]
    folds = quality.folds_of(lines, 5)
    tests = [line for _, test in folds for line in test]
    assert sorted(tests) == sorted(lines)  # every line is in exactly one test part
    for train, test in folds:
        assert not set(train) & set(test) and len(train) + len(test) == len(lines)
    assert folds == quality.folds_of(lines, 5)  # seeded


def test_a_row_reads_as_published_and_ours_with_the_gain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    row = quality.Row("mpqa", "TextCNN", 85.7, 86.3, [0.84, 0.86], [0.87, 0.87], 8, 20, 0.25, "textcnn / focal / l2 / adam / constant", "2-fold CV")
    cells = row.cells()
    assert cells[:4] == ["mpqa", "TextCNN", "85.7", "86.3"]
    assert cells[4] == "85.0 ± 1.4" and cells[5] == "87.0 ± 0.0" and cells[6] == "+2.0"
    monkeypatch.setattr(quality, "RESULTS", tmp_path / "RESULTS.md")
    quality.write_results([row], "python bench/quality.py mpqa --folds 2")
    quality.write_results([row], "python bench/quality.py mpqa --folds 3")
    text = (tmp_path / "RESULTS.md").read_text()
    assert text.count("## ") == 2 and text.index("--folds 3") < text.index("--folds 2")  # newest first
    assert "| mpqa | TextCNN | 85.7 | 86.3 | 85.0 ± 1.4 | 87.0 ± 0.0 | +2.0 |" in text
