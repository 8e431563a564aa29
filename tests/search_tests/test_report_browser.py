"""The HTML report as a user opens it: headless Chromium, no network, no console errors, plots drawn.

Chromium is driven from the command line only (no DevTools client is a dependency):
- `--dump-dom` gives the DOM after the page's scripts ran; a small script injected at the top of a
  copy of the page records console errors, uncaught exceptions and failed resource loads in an
  attribute of <html>, which the dump carries back;
- `--screenshot` gives a PNG, decoded here with zlib and numpy, to check that pixels were drawn.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import optuna
import pytest

from search.report import format_table, strategy_table, write_report
from tests.search_tests.test_report import make_study

CHROMIUM = next((found for name in ("chromium", "chromium-browser", "google-chrome") if (found := shutil.which(name))), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (Debian: apt-get install chromium; .ci/system-packages does it)")

# Records what a browser console would show as errors, before any of the page's scripts run.
CAPTURE = """<script>(function () {
  var seen = [];
  function note(kind, text) {
    seen.push(kind + ": " + text);
    document.documentElement.setAttribute("data-console-errors", JSON.stringify(seen));
  }
  var original = console.error;
  console.error = function () { note("console.error", Array.prototype.map.call(arguments, String).join(" ")); return original.apply(console, arguments); };
  window.addEventListener("error", function (event) {
    if (event.target && event.target !== window) note("failed to load", event.target.src || event.target.href || event.target.tagName);
    else note("uncaught", event.message);
  }, true);
  window.addEventListener("unhandledrejection", function (event) { note("unhandled rejection", String(event.reason)); });
})();</script>"""


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--hide-scrollbars", f"--user-data-dir={profile}",
        "--enable-logging=stderr", "--v=0",
        "--virtual-time-budget=5000",  # let timers and promises (plotly's async layout steps) finish first
    ]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120)  # type: ignore[list-item]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[optuna.Study]]:
    """Two finished studies (the second gets a better late trial, so the overlaid lines differ)."""
    folder = tmp_path_factory.mktemp("browser")
    one, two = make_study(folder / "r.db", "one"), make_study(folder / "r.db", "two")
    late = two.ask({"loss/name": optuna.distributions.CategoricalDistribution(["focal", "cross_entropy"])})
    late.set_user_attr("config", {"encoder": {"name": "bilstm"}, "addons": {"mhsa": {"enabled": True}}, "loss": {"name": late.params["loss/name"]},
                                  "train": {"batch_size": 32}, "model": {"embedding_dim": 128}})
    late.report(0.85, 1)
    late.report(0.90, 2)
    two.tell(late, 0.90)
    return write_report([one, two], folder / "out"), [one, two]


def test_report_is_self_contained(report) -> None:
    page = report[0].read_text(encoding="utf-8")
    assert page.count("* plotly.js v") == 1  # inlined once
    assert not re.search(r"<script[^>]*\bsrc=", page), "a <script src=...> would need the network"
    assert not re.search(r"<link[^>]*\bhref=\"?https?:", page), "a stylesheet from the network"


def test_report_renders_in_chromium_without_console_errors(report, tmp_path: Path) -> None:
    path, studies = report
    page = path.read_text(encoding="utf-8")
    probe = tmp_path / "report.html"
    probe.write_text(page.replace("<head>", "<head>" + CAPTURE, 1), encoding="utf-8")

    result = chromium("--dump-dom", probe.as_uri(), profile=tmp_path / "profile")
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    errors = re.search(r'<html[^>]*data-console-errors="([^"]*)"', dom)
    assert errors is None, f"console errors: {json.loads(html.unescape(errors.group(1)))}"
    logged = [line for line in result.stderr.splitlines() if ":CONSOLE" in line and ("Uncaught" in line or "rror" in line)]
    assert not logged, logged

    # Every figure the page draws got its plotly SVG; the count comes from the page itself.
    figures = page.count("Plotly.newPlot(")
    assert figures == 1 + 4 * len(studies)  # the overlay, then history, curves, importances, coordinates per study
    assert "not available:" not in page
    drawn = dom.split('class="plotly-graph-div')[1:]
    assert len(drawn) == figures
    for index, chunk in enumerate(drawn):
        assert 'class="main-svg"' in chunk, f"figure {index} has no SVG"
        assert re.search(r'class="(js-line|point|bars?|point plotly-customdata)"', chunk), f"figure {index} drew no trace"
    # The overlay has one best-so-far line per study, labelled with the study.
    overlay = drawn[0]
    for study in studies:
        assert f"{study.study_name} (accuracy, maximize): best so far" in overlay

    # Each study's strategy table, as rendered, holds the counts `search report --table` prints.
    tables = re.findall(r'<table class="strategy">(.*?)</table>', dom, flags=re.S)
    assert len(tables) == len(studies)
    for study, table in zip(studies, tables):
        rendered = [[html.unescape(cell) for cell in re.findall(r"<td>(.*?)</td>", row)] for row in re.findall(r"<tr>(.*?)</tr>", table, flags=re.S)]
        expected = [line.split() for line in format_table(strategy_table(study)).splitlines()[1:] if line]
        assert [row for row in rendered if row] == expected
    focal = next(row for row in re.findall(r"<tr>(.*?)</tr>", tables[0], flags=re.S) if "<td>focal</td>" in row)
    assert re.findall(r"<td>(.*?)</td>", focal)[2:6] == ["3", "2", "1", "0"]  # trials, complete, pruned, fail (see make_study)


def png_pixels(path: Path) -> np.ndarray:
    """RGB pixels of an 8-bit, non-interlaced PNG (what Chromium writes), as a (height, width, 3) array."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    position, chunks = 8, []
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        body = data[position + 8:position + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            chunks.append(body)
        position += 12 + length
    assert depth == 8 and colour_type in (2, 6) and interlace == 0, (depth, colour_type, interlace)
    step = 3 if colour_type == 2 else 4  # bytes per pixel
    raw = np.frombuffer(zlib.decompress(b"".join(chunks)), dtype=np.uint8).reshape(height, 1 + width * step)
    rows = np.zeros((height, width * step), dtype=np.uint8)
    prior = np.zeros(width * step, dtype=np.int64)
    for y in range(height):
        kind, line = raw[y, 0], raw[y, 1:].astype(np.int64)
        if kind == 0:  # None
            row = line
        elif kind == 1:  # Sub: each byte adds the one a pixel to its left, i.e. a running sum per channel
            row = line.reshape(width, step).cumsum(axis=0).reshape(-1) % 256
        elif kind == 2:  # Up
            row = (line + prior) % 256
        else:  # Average (3) and Paeth (4) depend on the byte just decoded: one byte at a time
            out, above = [0] * len(line), prior.tolist()
            for i, value in enumerate(line.tolist()):
                left = out[i - step] if i >= step else 0
                if kind == 3:
                    out[i] = (value + (left + above[i]) // 2) % 256
                else:
                    upper_left = above[i - step] if i >= step else 0
                    guess = left + above[i] - upper_left
                    near = min((abs(guess - left), 0, left), (abs(guess - above[i]), 1, above[i]), (abs(guess - upper_left), 2, upper_left))
                    out[i] = (value + near[2]) % 256
            row = np.array(out, dtype=np.int64)
        rows[y] = row
        prior = row
    return rows.reshape(height, width, step)[:, :, :3]


def test_report_plots_are_drawn_on_screen(report, tmp_path: Path) -> None:
    path, _ = report
    shot = tmp_path / "report.png"
    # The top of the page: the overlaid histories, the first study's history and learning curves.
    result = chromium(f"--screenshot={shot}", "--window-size=1000,1700", path.as_uri(), profile=tmp_path / "profile")
    assert shot.exists(), result.stderr[-2000:]
    pixels = png_pixels(shot)
    assert pixels.shape == (1700, 1000, 3)
    flat = pixels.reshape(-1, 3).astype(np.int64)

    def share(colour: tuple[int, int, int], tolerance: int = 12) -> float:
        return float((np.abs(flat - np.array(colour)).max(axis=1) <= tolerance).mean())

    non_white = float((flat.min(axis=1) < 245).mean())
    distinct = len(np.unique(flat[:, 0] << 16 | flat[:, 1] << 8 | flat[:, 2]))
    plot_area = share((229, 236, 246), tolerance=2)  # plotly's default plot background
    blue, orange = share((31, 119, 180)), share((255, 127, 14))  # the report's first two line colours
    print(f"screenshot: {non_white:.1%} non-white, {distinct} colours, plot area {plot_area:.1%}, blue {blue:.2%}, orange {orange:.2%}")
    assert non_white > 0.15, "the page looks blank"
    assert plot_area > 0.10, "no plot area drawn"
    assert distinct > 50
    assert blue > 0.0005 and orange > 0.0005, "the lines of the overlay and the learning curves are missing"
