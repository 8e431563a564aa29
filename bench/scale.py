"""Driver cost per trial as a study grows: 100, 1,000 and 5,000 trials of a trainable that does nothing.

Each size is one `search.engine.run_search` call on the demo study's space (`studies/demo.yaml`:
the sampler, ASHA, the recording searcher and the storage exactly as `search run` uses them), with a
trainable that trains nothing: it reports one epoch with a made-up accuracy and returns. Everything
the run spends is then the engine's: Ray's scheduling, the sampler, the Optuna storage.

Both storages run in this process, size by size: an SQLite file, then a throwaway PostgreSQL server
on loopback (`search.testing.postgres_server`; skipped with the reason where PostgreSQL is missing).

Figures per (storage, size), from the study's own records and from timers around the searcher:
- `ms_per_trial`: the search span (first trial asked to last trial told) / trials;
- `tail_ms_per_trial`: the same over the last 10% of trials (the cost once the study is that big);
- `suggest_ms`, `record_ms`: driver time per trial in the searcher's `suggest` (sampler + DB writes of
  the new trial) and in its result and completion hooks (DB writes of values, attributes, state).
The target: `ms_per_trial` at the largest size at most 2x that at the smallest (`*_growth`); the same
ratio of the last-10% figures (`*_tail_growth`) leaves out the start of the search (Ray's workers
starting and importing torch), which weighs most on the smallest size.

    python bench/scale.py [--sizes 100,1000,5000] [--storages sqlite,postgresql] [--concurrency 2]

The last line is `RESULT ...` for scripts.
"""

from __future__ import annotations

import argparse
import functools
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # runnable as `python bench/scale.py` without installing the project

from bench._common import DEFAULT_DATA_ROOT, quiet_ray_environment, require_sst2, result_line  # noqa: E402


def noop_trainable(config: dict[str, Any], data: Any, settings: Any) -> None:
    """Trains nothing: reports each epoch with an accuracy made up from the config (so the sampler
    has something to model) and returns."""
    import zlib

    from ray import tune

    score = 0.5 + (zlib.crc32(repr(sorted(config.items())).encode()) % 1000) / 4000
    for epoch in range(1, settings.max_epochs + 1):
        tune.report({"accuracy": score + 0.01 * epoch, "epoch": epoch, "trial_seconds": 0.0})


class SearcherTimers:
    """Wraps RecordingOptunaSearch's hooks with timers (the searcher lives in this driver process)."""

    HOOKS = {"suggest": "suggest", "on_trial_result": "record", "on_trial_complete": "record"}

    def __init__(self) -> None:
        self.seconds = {"suggest": 0.0, "record": 0.0}
        self._originals: dict[str, Callable[..., Any]] = {}

    def __enter__(self) -> SearcherTimers:
        from search.searcher import RecordingOptunaSearch

        for hook, bucket in self.HOOKS.items():
            original = getattr(RecordingOptunaSearch, hook)
            self._originals[hook] = original

            @functools.wraps(original)
            def timed(searcher: Any, *args: Any, _original: Callable[..., Any] = original, _bucket: str = bucket, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return _original(searcher, *args, **kwargs)
                finally:
                    self.seconds[_bucket] += time.perf_counter() - started

            setattr(RecordingOptunaSearch, hook, timed)
        return self

    def __exit__(self, *exc: object) -> None:
        from search.searcher import RecordingOptunaSearch

        for hook, original in self._originals.items():
            setattr(RecordingOptunaSearch, hook, original)


def run_size(base: Any, storage: str, size: int, concurrency: int, epochs: int, data_root: Path, folder: Path) -> dict[str, float]:
    import optuna

    from search.config import apply_overrides
    from search.engine import run_search

    name = f"scale-{size}"
    config = apply_overrides(base, storage=storage, study_name=name, trials=size, max_epochs=epochs, concurrency=concurrency)
    started = time.perf_counter()
    with SearcherTimers() as timers:
        run_search(config, data_root=data_root, storage_path=folder / "ray_results", ray_temp_dir=folder / "ray",
                   trainable=noop_trainable, verbose=0, log=lambda _line: None)
    call = time.perf_counter() - started
    trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    finished = sorted(t.datetime_complete for t in trials if t.datetime_complete is not None)
    if len(finished) != size:
        raise RuntimeError(f"{name}: {len(finished)} of {size} trials finished")
    span = (finished[-1] - min(t.datetime_start for t in trials)).total_seconds()
    tail = max(1, size // 10)
    return {
        "call_s": call,
        "ms_per_trial": 1000 * span / size,
        "tail_ms_per_trial": 1000 * (finished[-1] - finished[-1 - tail]).total_seconds() / tail if size > tail else float("nan"),
        "suggest_ms": 1000 * timers.seconds["suggest"] / size,
        "record_ms": 1000 * timers.seconds["record"] / size,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,5000", help="comma-separated trial counts, smallest first")
    parser.add_argument("--storages", default="sqlite,postgresql", help="sqlite, postgresql or both")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=1, help="epochs each do-nothing trial reports")
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT, help="folder holding sentence/sst2/ (the demo study's data)")
    args = parser.parse_args(argv)
    try:
        sizes = sorted({int(size) for size in args.sizes.split(",")})
    except ValueError:
        parser.error(f"--sizes {args.sizes!r}: give comma-separated integers such as 100,1000,5000")
    storages = [name.strip() for name in args.storages.split(",") if name.strip()]
    if not sizes or min(sizes) < 1 or args.concurrency < 1 or args.epochs < 1:
        parser.error("--sizes, --concurrency and --epochs must be positive")
    if not storages or set(storages) - {"sqlite", "postgresql"}:
        parser.error(f"--storages {args.storages!r}: accepted: sqlite, postgresql")
    quiet_ray_environment()
    require_sst2(args.data_root)

    import datasets

    from search.config import load_study_file
    from search.testing import PostgresUnavailable, postgres_server

    datasets.disable_progress_bars()
    base = load_study_file(REPO / "studies" / "demo.yaml")
    print(f"scale: sizes {sizes}, storages {storages}, concurrency {args.concurrency}, {args.epochs} epoch(s) per trial, "
          f"a do-nothing trainable on the demo study's space", flush=True)

    figures: dict[str, Any] = {}
    skipped: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as scratch:
        root = Path(scratch)
        root.chmod(0o755)  # under root, the PostgreSQL server runs as `postgres` and must reach its folder
        for kind in storages:
            if kind == "sqlite":
                server: Any = None
                url = f"sqlite:///{root / 'scale.db'}"
            else:
                server = postgres_server()
                try:
                    url = server.__enter__()
                except (PostgresUnavailable, RuntimeError) as error:
                    print(f"postgresql: skipped: {error}", flush=True)
                    skipped.append("postgresql")
                    continue
            try:
                rows = {}
                for size in sizes:
                    print(f"{kind} {size} trials ...", flush=True)
                    rows[size] = row = run_size(base, url, size, args.concurrency, args.epochs, args.data_root, root / f"{kind}-{size}")
                    print(f"{kind} {size:>6} trials: {row['ms_per_trial']:7.1f} ms/trial (last 10%: {row['tail_ms_per_trial']:7.1f}), "
                          f"suggest {row['suggest_ms']:6.1f} ms, record {row['record_ms']:6.1f} ms; whole call {row['call_s']:.1f} s", flush=True)
                    figures[f"{kind}_{size}_ms"] = row["ms_per_trial"]
                    figures[f"{kind}_{size}_tail_ms"] = row["tail_ms_per_trial"]
                    figures[f"{kind}_{size}_suggest_ms"] = row["suggest_ms"]
                    figures[f"{kind}_{size}_record_ms"] = row["record_ms"]
                figures[f"{kind}_growth"] = rows[sizes[-1]]["ms_per_trial"] / rows[sizes[0]]["ms_per_trial"]
                figures[f"{kind}_tail_growth"] = rows[sizes[-1]]["tail_ms_per_trial"] / rows[sizes[0]]["tail_ms_per_trial"]
                print(f"{kind}: ms/trial at {sizes[-1]} trials / at {sizes[0]} trials = {figures[f'{kind}_growth']:.2f} (target <= 2); "
                      f"last 10%: {figures[f'{kind}_tail_growth']:.2f}", flush=True)
            finally:
                if server is not None:
                    server.__exit__(None, None, None)
    figures.update({"sizes": "/".join(map(str, sizes)), "concurrency": args.concurrency, "epochs": args.epochs})
    if skipped:
        figures["skipped"] = ",".join(skipped)
    print(result_line(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
