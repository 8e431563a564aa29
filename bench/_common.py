"""What the benchmarks share: memory of a process tree, the RESULT line, the study they run, the data.

Private to `bench/`; each benchmark stays one readable script.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA_ROOT = REPO.parent / "shared" / "data"
SST2_FILES = {"train": "sentence/sst2/stsa.binary.train", "validation": "sentence/sst2/stsa.binary.dev", "test": "sentence/sst2/stsa.binary.test"}
GIB = 1024**3
TRIAL_WORKER = "ray::ImplicitFunc"  # the title Ray gives the worker process of a Tune trial


def quiet_ray_environment() -> None:
    """Closed network, no usage stats, no token warning, no excessive-sync warning."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def result_line(figures: dict[str, Any]) -> str:
    """`RESULT name=value ...`: floats with 4 significant digits, no spaces inside values."""
    parts = []
    for name, value in figures.items():
        text = f"{value:.4g}" if isinstance(value, float) else str(value)
        parts.append(f"{name}={text.replace(' ', '_')}")
    return "RESULT " + " ".join(parts)


def parse_result_line(text: str) -> dict[str, str]:
    """The figures of the last RESULT line in `text` (what a script reading a benchmark does)."""
    lines = [line for line in text.splitlines() if line.startswith("RESULT ")]
    if not lines:
        raise ValueError("no RESULT line")
    return dict(part.split("=", 1) for part in lines[-1].split()[1:])


# ---- memory of a process tree -------------------------------------------------------------------


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue  # the process ended meanwhile
        # The command name may hold spaces and parentheses: fields start after the last ')'.
        ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants (Ray's GCS, raylet and workers when the driver started Ray)."""
    children, tree, stack = _children_map(), [], [root]
    while stack:
        pid = stack.pop()
        tree.append(pid)
        stack.extend(children.get(pid, ()))
    return tree


def process_name(pid: int) -> str:
    """A short name: `ray::A`-style titles as they are, else the script or binary's file name."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            argv = [part.decode(errors="replace") for part in handle.read().split(b"\0") if part]
    except OSError:
        return "?"
    if not argv:
        return "?"
    if argv[0].startswith("ray::"):
        return argv[0].split()[0]
    scripts = [part for part in argv[1:] if part.endswith(".py")]
    return os.path.basename(scripts[0] if scripts else argv[0])


def memory_kib(pid: int) -> tuple[int, int]:
    """(PSS, RSS) of one process in KiB. PSS splits shared pages (torch's libraries, the object
    store) among the processes that map them, so the sum over a tree counts each page once."""
    pss = rss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
                elif line.startswith("Rss:"):
                    rss = int(line.split()[1])
    except OSError:
        pass
    return pss, rss


def tree_pss_kib(root: int | None = None) -> int:
    """The PSS summed over `root` (this process by default) and its descendants, in KiB."""
    return sum(memory_kib(pid)[0] for pid in process_tree(os.getpid() if root is None else root))


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) one process has used so far; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(b")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_title(pid: int) -> str:
    """What `ps` shows for a process: Ray sets its workers' to `ray::IDLE`, `ray::ImplicitFunc...`."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


class TrainingStart:
    """A trainable that writes the wall-clock time at which each trial starts training (its first
    call) to a file of its own in `folder`, then trains as `trainable` does. Picklable: Ray ships
    it to the trial workers, which write to the same folder (one machine)."""

    def __init__(self, trainable: Any, folder: Path) -> None:
        self.trainable = trainable
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.__name__ = getattr(trainable, "__name__", "trial")  # Ray names trials after it

    def __call__(self, config: dict[str, Any], data: Any, settings: Any, **kwargs: Any) -> None:
        started = time.time()
        (self.folder / f"{os.getpid()}-{started:.6f}").write_text(f"{started:.6f}")
        self.trainable(config, data, settings, **kwargs)


def first_training_start(folder: Path) -> float | None:
    """When the first trial stamped by `TrainingStart(..., folder)` started training (time.time()),
    or None if none did."""
    stamps = [float(path.read_text()) for path in Path(folder).glob("*")]
    return min(stamps) if stamps else None


class TreeMemory:
    """Samples the memory of this process and its descendants in a background thread; keeps the peak.

    Linux only (reads /proc). `peak_pss_gib` is the figure the benchmarks report; `peak_rss_gib`
    (the sum of RSS, shared pages counted once per process) is printed beside it for reference.
    """

    def __init__(self, interval_s: float = 0.25) -> None:
        self.interval_s = interval_s
        self.peak_pss_kib = 0
        self.peak_rss_kib = 0
        self.peak_processes = 0
        self.start_pss_kib = 0  # the tree when sampling began
        self.peak_breakdown: dict[str, int] = {}  # process name -> PSS KiB, at the peak sample
        self.peak_counts: dict[str, int] = {}  # process name -> processes of that name, at the peak sample
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> None:
        pids = process_tree(os.getpid())
        totals = [memory_kib(pid) for pid in pids]
        pss = sum(p for p, _ in totals)
        if pss > self.peak_pss_kib:
            self.peak_pss_kib = pss
            breakdown: dict[str, int] = {}
            counts: dict[str, int] = {}
            for pid, (p, _) in zip(pids, totals):
                name = "driver" if pid == os.getpid() else process_name(pid)
                breakdown[name] = breakdown.get(name, 0) + p
                counts[name] = counts.get(name, 0) + 1
            self.peak_breakdown, self.peak_counts = breakdown, counts
        self.peak_rss_kib = max(self.peak_rss_kib, sum(r for _, r in totals))
        self.peak_processes = max(self.peak_processes, len(pids))

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def __enter__(self) -> TreeMemory:
        self.sample()
        self.start_pss_kib = self.peak_pss_kib
        self._thread = threading.Thread(target=self._run, name="tree-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()

    def describe_peak(self) -> str:
        """`name MiB, ...` at the peak, largest first (processes of one name summed)."""
        items = sorted(self.peak_breakdown.items(), key=lambda item: -item[1])
        return ", ".join(f"{name} {kib / 1024:.0f}" for name, kib in items)

    def peak_mean_pss_mib(self, name_prefix: str) -> float | None:
        """Mean PSS of the processes whose name starts with `name_prefix` at the peak (MiB), e.g.
        `ray::ImplicitFunc` for the trial workers; None where there were none."""
        names = [name for name in self.peak_breakdown if name.startswith(name_prefix)]
        count = sum(self.peak_counts.get(name, 0) for name in names)
        return sum(self.peak_breakdown[name] for name in names) / 1024 / count if count else None

    @property
    def peak_pss_gib(self) -> float:
        return self.peak_pss_kib * 1024 / GIB

    @property
    def peak_rss_gib(self) -> float:
        return self.peak_rss_kib * 1024 / GIB


# ---- data and studies ---------------------------------------------------------------------------


def require_sst2(data_root: Path) -> None:
    """Exits with status 2 and the reason when the SST-2 files are not under `data_root`."""
    missing = [path for path in SST2_FILES.values() if not (data_root / path).is_file()]
    if missing:
        print(f"error: SST-2 not found under {data_root} (missing {', '.join(missing)}); pass --data-root DIR "
              "(the folder holding sentence/sst2/, ../shared/data beside the repository by default)", file=sys.stderr)
        sys.exit(2)


def sst2_subset(data_root: Path, folder: Path, train_sentences: int | None) -> Path:
    """A data root holding SST-2 with only the first `train_sentences` training sentences (all of
    dev and test), so that an epoch takes the time a benchmark wants. Returns the new data root."""
    for split, relative in SST2_FILES.items():
        source, target = data_root / relative, folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        lines = source.read_bytes().splitlines(keepends=True)
        if split == "train" and train_sentences is not None:
            lines = lines[:train_sentences]
        target.write_bytes(b"".join(lines))
    return folder


def sst2_study(name: str, *, storage: str, trials: int, max_epochs: int, concurrency: int, seed: int,
               space: dict[str, Any], grace_period: int = 1, reduction_factor: int | None = None, gpu: float = 0.0,
               max_length: int = 50) -> dict[str, Any]:
    """A study file's content (as `yaml.safe_load` would give it) for a text-classification search on SST-2;
    without `reduction_factor`, the study default's."""
    asha: dict[str, Any] = {"grace_period": grace_period}
    if reduction_factor is not None:
        asha["reduction_factor"] = reduction_factor
    return {
        "name": name,
        "task": "text_classification",
        "seed": seed,
        "data": {"name": "sst2", "local": {"format": "label_text", "files": dict(SST2_FILES)}, "max_length": max_length},
        "metric": "accuracy",
        "direction": "maximize",
        "budget": {"trials": trials, "max_epochs": max_epochs, "concurrency": concurrency, "resources": {"cpu": 1, "gpu": gpu}},
        "asha": asha,
        "storage": storage,
        "space": space,
    }


@contextmanager
def timer() -> Iterator[dict[str, float]]:
    """`with timer() as t: ...` then `t["seconds"]`."""
    box: dict[str, float] = {}
    started = time.perf_counter()
    try:
        yield box
    finally:
        box["seconds"] = time.perf_counter() - started


def idle_slot_seconds(intervals: list[tuple[float, float]], concurrency: int) -> tuple[float, float]:
    """Slot time with no trial in it, from each trial's (asked, told) in seconds: (before the last
    trial was asked, after it). The first is time lost between trials; the second is the end of the
    search, when the budget is spent and the slots empty one by one while the last trials finish."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    last_ask = max(start for start, _ in intervals)
    before = after = 0.0
    running, now = 0, events[0][0]
    for moment, change in events:
        idle = max(0, concurrency - running)
        if moment > now:
            split = min(max(last_ask, now), moment)  # the part of [now, moment] before the last ask
            before += idle * (split - now)
            after += idle * (moment - split)
            now = moment
        running += change
    return before, after


def trial_figures(study: Any, concurrency: int = 1) -> dict[str, Any]:
    """Trials, epochs trained, time inside trials and the search span, read from an Optuna study.

    Where the rest of `concurrency x span` went: `held_s` sums each trial's time from asked to
    told; slot time with no trial at all is split into `gap_idle_s` (before the last trial was
    asked: between a trial told and the next asked) and `tail_idle_s` (after: the end of the
    search); `held_s - busy_s` is time a trial held a slot without training (worker start-up,
    imports, model set-up, result round trips), split into the first `concurrency` trials (one per
    slot: they pay the start-up) and the mean over the rest (`steady_trial_overhead_s`).
    `steady_overhead_per_trial_s` is what a slot loses per trial once started: the later trials'
    time not training plus the slot time empty between trials, per later trial. `first_asked_at`
    and `last_told_at` are the span's ends as `time.time()` values."""
    trials = sorted((t for t in study.get_trials(deepcopy=False) if t.state.is_finished()), key=lambda t: t.number)
    inside = [float(t.user_attrs.get("metrics", {}).get("trial_seconds", 0.0)) for t in trials]
    origin = min(t.datetime_start for t in trials)
    intervals = [((t.datetime_start - origin).total_seconds(), (t.datetime_complete - origin).total_seconds()) for t in trials]
    held = [end - start for start, end in intervals]
    busy = sum(inside)
    epochs = sum(int(t.user_attrs.get("epochs_trained", 0)) for t in trials)
    span = max(end for _, end in intervals)
    states: dict[str, int] = {}
    for t in trials:
        states[t.state.name] = states.get(t.state.name, 0) + 1
    gap_idle, tail_idle = idle_slot_seconds(intervals, concurrency)
    not_training = [h - i for h, i in zip(held, inside)]
    rest = not_training[concurrency:]
    return {
        "trials": len(trials), "epochs": epochs, "busy_s": busy, "span_s": span, "states": states,
        "held_s": sum(held), "gap_idle_s": gap_idle, "tail_idle_s": tail_idle,
        "first_trials_overhead_s": sum(not_training[:concurrency]),
        "steady_trial_overhead_s": sum(rest) / len(rest) if rest else 0.0,
        "steady_overhead_per_trial_s": (sum(rest) + gap_idle) / len(rest) if rest else 0.0,
        # Optuna stores local times without a zone; .timestamp() reads them as local, as they were written.
        "first_asked_at": origin.timestamp(),
        "last_told_at": max(t.datetime_complete for t in trials).timestamp(),
    }
