"""`search`: run a strategy search from a study file, and look at what the database holds.

    search run studies/demo.yaml --data-root ../shared/data
    search status [--storage URL]
    search best STUDY_NAME [--storage URL]
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from search.config import DEFAULT_STORAGE

STATE_ORDER = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")


class UserError(Exception):
    """Shown to the user as one paragraph, exit code 2, no traceback."""


def _default_storage() -> str:
    return os.environ.get("SEARCH_STORAGE", DEFAULT_STORAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="search", description="Training-strategy search with Ray Tune, Optuna and ASHA.")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run (or continue) the search a study file describes")
    run.add_argument("study_file", metavar="STUDY.yaml")
    run.add_argument("--storage", help="SQLAlchemy URL of the Optuna DB (overrides the study file)")
    run.add_argument("--study-name", help="name of the study in the DB (overrides the study file)")
    run.add_argument("--trials", type=int, help="total number of finished trials wanted")
    run.add_argument("--max-epochs", type=int, help="epochs of a trial that is never stopped")
    run.add_argument("--concurrency", type=int, help="trials running at once")
    _add_run_flags(run)

    resume = commands.add_parser(
        "resume", help="continue a study from the DB alone (its study file is recorded there); same as `run` with its file",
    )
    resume.add_argument("study_name", metavar="STUDY_NAME")
    resume.add_argument("--storage", default=None, help=f"SQLAlchemy URL (default: $SEARCH_STORAGE or {DEFAULT_STORAGE})")
    resume.add_argument("--trials", type=int, help="total number of finished trials wanted (default: the study's)")
    resume.add_argument("--concurrency", type=int, help="trials running at once")
    _add_run_flags(resume)

    status = commands.add_parser("status", help="studies in the DB with their trial counts by state")
    status.add_argument("--storage", default=None, help=f"SQLAlchemy URL (default: $SEARCH_STORAGE or {DEFAULT_STORAGE})")

    best = commands.add_parser("best", help="the best trial of a study: value and full config")
    best.add_argument("study_name", metavar="STUDY_NAME")
    best.add_argument("--storage", default=None, help=f"SQLAlchemy URL (default: $SEARCH_STORAGE or {DEFAULT_STORAGE})")
    best.add_argument("--as-study", metavar="FILE", help="also write a study file that retrains this config (one trial, every value fixed)")

    report = commands.add_parser("report", help="strategy table, and an HTML report with plots")
    report.add_argument("study_names", nargs="+", metavar="STUDY_NAME")
    report.add_argument("--storage", default=None, help=f"SQLAlchemy URL (default: $SEARCH_STORAGE or {DEFAULT_STORAGE})")
    report.add_argument("--out", metavar="DIR", help="write DIR/report.html (self-contained, plotly)")
    report.add_argument("--table", action="store_true", help="print the strategy table in the terminal")

    export = commands.add_parser("export", help="best configs for `search train` (yaml, json, cli flags) or Hugging Face (hf)")
    export.add_argument("study_name", metavar="STUDY_NAME")
    export.add_argument("--storage", default=None, help=f"SQLAlchemy URL (default: $SEARCH_STORAGE or {DEFAULT_STORAGE})")
    which = export.add_mutually_exclusive_group()
    which.add_argument("--top", type=int, default=1, help="the K best COMPLETE trials (default 1)")
    which.add_argument("--trial", type=int, help="this trial number")
    export.add_argument("--format", choices=("yaml", "json", "hf", "cli"), default="yaml",
                        help="yaml/json: a file for `search train`; cli: `search train` flags; hf: TrainingArguments fields + unmapped")
    export.add_argument("--out", metavar="FILE", help="write here instead of printing")

    train = commands.add_parser("train", help="train an exported config to completion, outside any search")
    train.add_argument("config_file", metavar="CONFIG.yaml", nargs="?", help="written by `search export --format yaml|json`; or give the config as flags")
    train.add_argument("--task", help="task (overrides the file)")
    train.add_argument("--metric", help="dev metric reported per epoch (overrides the file)")
    train.add_argument("--seed", type=int, help="seed (overrides the file)")
    train.add_argument("--data", metavar="JSON", help="the `data` section as JSON or YAML (overrides the file)")
    train.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                       help="one config value, named as in the DB (loss/name=focal, loss/focal/gamma=2.0); repeatable")
    train.add_argument("--out", default="trained", metavar="DIR", help="model.safetensors, vocab.json, metrics.json, config.yaml (default: ./trained)")
    train.add_argument("--data-root", help="folder with local copies of datasets (default: $SEARCH_DATA_ROOT)")
    train.add_argument("--max-epochs", type=int, help="epochs (default: the study's max_epochs)")

    dashboard = commands.add_parser("dashboard", help="optuna-dashboard on the study storage")
    dashboard.add_argument("--storage", default=None, help=f"SQLAlchemy URL (default: $SEARCH_STORAGE or {DEFAULT_STORAGE})")
    dashboard.add_argument("--host", default="127.0.0.1", help="interface to serve on (default: loopback only; the dashboard has no authentication, see README)")
    dashboard.add_argument("--port", type=int, default=8080)
    return parser


def _add_run_flags(command: argparse.ArgumentParser) -> None:
    command.add_argument("--data-root", help="folder with local copies of datasets (default: $SEARCH_DATA_ROOT)")
    command.add_argument(
        "--storage-path", "--results-dir", dest="storage_path",
        help="where Ray keeps trial folders and checkpoints; on a cluster a path every node reaches "
        "(shared mount or s3://...) (default: the study's storage_path, else ./ray_results)",
    )
    command.add_argument(
        "--address", default=os.environ.get("SEARCH_RAY_ADDRESS"),
        help="run on an existing Ray cluster: auto, HOST:PORT (the head's GCS port) or ray://HOST:PORT "
        "(default: $SEARCH_RAY_ADDRESS, else a local Ray started for this run)",
    )
    command.add_argument(
        "--time-budget", type=float, metavar="SECONDS", dest="time_budget_s",
        help="wall clock for this run's trials (the study's budget.time_budget_s by default); "
        "trials it cuts off are re-queued and `search resume` continues them",
    )
    command.add_argument(
        "--ray-dashboard", action="store_true",
        help="start Ray's dashboard with the local Ray of this search (needs pip install 'ray[default]'); "
        "by default a search starts Ray without it",
    )
    output = command.add_mutually_exclusive_group()
    output.add_argument("--quiet", action="store_true", help="no progress table, only the summary")
    output.add_argument("--verbose", action="store_true", help="also Ray's own output: its banners and log lines, and the trials' logs")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Ray forces an experiment snapshot after each checkpoint when keeping the last one only;
    # the snapshot is small here, so its "may become a bottleneck" warning is noise.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "resume":
            return _resume(args)
        if args.command == "status":
            return _status(args.storage or _default_storage())
        if args.command == "report":
            return _report(args.study_names, args.storage or _default_storage(), args.out, args.table)
        if args.command == "export":
            return _export(args.study_name, args.storage or _default_storage(), args.top, args.trial, args.format, args.out)
        if args.command == "train":
            return _train(args)
        if args.command == "dashboard":
            return _dashboard(args.storage or _default_storage(), args.host, args.port)
        return _best(args.study_name, args.storage or _default_storage(), args.as_study)
    except KeyboardInterrupt:
        print("search: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as error:
        from search import DataError, SearchError, SpaceError, StudyFileError
        from search.resilient_storage import StorageUnavailable, refusal_to_write

        if isinstance(error, (UserError, StudyFileError, SearchError, SpaceError, DataError, StorageUnavailable)):
            print(f"search: error: {error}", file=sys.stderr)
            return 2
        refused = refusal_to_write(error)
        if refused is not None:
            print(f"search: error: the study database refuses writes ({refused}); nothing was written. "
                  "Make it writable (or free space), then run the same command again", file=sys.stderr)
            return 2
        raise


def _run(args: argparse.Namespace) -> int:
    from search import load_study
    from search.config import apply_overrides

    config = load_study(args.study_file)
    config = apply_overrides(
        config, storage=args.storage, study_name=args.study_name, trials=args.trials,
        max_epochs=args.max_epochs, concurrency=args.concurrency, storage_path=args.storage_path,
        time_budget_s=args.time_budget_s,
    )
    return _search(config, args)


def _resume(args: argparse.Namespace) -> int:
    """The study file recorded in the study (user attribute `study`) with the DB's URL and name."""
    import optuna

    from search.config import apply_overrides, parse_study

    storage_url = args.storage or _default_storage()
    study = _load_studies([args.study_name], storage_url)[0]
    recorded = study.user_attrs.get("study")
    if not isinstance(recorded, dict):
        raise UserError(f"study {args.study_name!r} has no recorded study file (it was not created by `search run`); resume it with `search run STUDY.yaml --study-name {args.study_name}`")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    config = parse_study(recorded, f"study {args.study_name!r} (recorded study file)", default_name=args.study_name)
    config = apply_overrides(
        config, storage=storage_url, study_name=args.study_name, trials=args.trials,
        concurrency=args.concurrency, storage_path=args.storage_path, time_budget_s=args.time_budget_s,
    )
    return _search(config, args)


def _search(config: object, args: argparse.Namespace) -> int:
    if args.ray_dashboard and args.address:
        raise UserError(
            f"--ray-dashboard starts Ray's dashboard with the local Ray of a search; the cluster at {args.address!r} "
            "has the dashboard it was started with (`ray start --head --include-dashboard=true`)"
        )
    import optuna

    from search import run_search
    from search.engine import display_url

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    import datasets

    datasets.disable_progress_bars()  # the engine prints one line before and after loading

    budget = config.budget  # type: ignore[attr-defined]
    print(
        f"search: study {config.name!r} ({config.task}, {config.metric}, {config.direction}) in {display_url(config.storage)}\n"
        f"  budget: {budget.trials} trials, up to {budget.max_epochs} epochs, {budget.concurrency} at a time, "
        f"{budget.cpus_per_trial:g} CPU + {budget.gpus_per_trial:g} GPU each; "
        f"ASHA grace {config.asha.grace_period}, reduction {config.asha.reduction_factor:g}\n"
        f"  space: {_space_line(config)}\n"
        f"  start: {_start_line(config)}",
        flush=True,
    )
    summary = run_search(
        config, data_root=args.data_root, storage_path=args.storage_path, address=args.address,
        verbose=0 if args.quiet else 2 if args.verbose else 1, ray_dashboard=args.ray_dashboard,
        log=lambda line: print(f"  {line}", flush=True),
    )
    minutes, seconds = divmod(int(summary.wall_seconds), 60)
    total = sum(summary.states.values())
    counts = ", ".join(f"{s} {summary.states[s]}" for s in STATE_ORDER if summary.states.get(s))
    print(f"\nsearch: done in {minutes}m{seconds:02d}s; study {summary.study_name!r} holds {total} trials ({counts})")
    if summary.best_trial is not None:
        print(f"  best: trial {summary.best_trial}, {config.metric} {summary.best_value:.4f}: {summary.best_strategy}")
        if summary.test_metrics:
            print(f"  test: {config.metric} {summary.test_metrics[config.metric]:.4f} (best trial's model on the test split)")
    else:
        print("  best: no trial completed all its epochs yet")
    for line in summary.baseline.lines() if summary.baseline else ():
        print(f"  {line}" if line.startswith("baseline") else f"            {line}")
    if summary.time_budget_reached:
        cut = (f"; {summary.trials_cut_off} trial(s) cut off are re-queued with their last checkpoint, and "
               f"`search resume {summary.study_name}` continues the study") if summary.trials_cut_off else ""
        print(f"  time budget of {config.budget.time_budget_s:g} s reached{cut}")
    if summary.interrupted:
        print(f"  interrupted: trials cut off are recorded as FAIL and re-queued with their last checkpoint; "
              f"`search resume {summary.study_name}` (or the same command) continues the study")
    storage_flag = f" --storage {_password_masked(summary.storage)}" if summary.storage != _default_storage() else ""
    print(f"  next: search best {summary.study_name}{storage_flag}")
    print(f"        optuna-dashboard {_password_masked(summary.storage)}")
    return 130 if summary.interrupted else 0


def _password_masked(url: str) -> str:
    """A storage URL for a command line to copy, its password shown as *** (the user fills it in)."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def _space_line(config: object) -> str:
    parts = []
    for fam in config.space.families.values():  # type: ignore[attr-defined]
        if fam.registry.kind == "choice":
            parts.append(f"{fam.family}={'|'.join(fam.candidates)}")
        else:
            chosen = [*(f"{n}?" for n in fam.candidates), *fam.always]
            parts.append(f"{fam.family}={'+'.join(chosen) or 'none'}")
    return " ".join(parts)


def _start_line(config: object) -> str:
    """The sampler, the baseline run first, and how many configs are queued after it."""
    from search.start import effective_sampler, startup_plan

    sampler = effective_sampler(config)  # type: ignore[arg-type]
    options = "".join(f", {k} {v}" for k, v in sampler.options.items())
    parts = [f"sampler {sampler.name}{options}", startup_plan(config).describe(config.baseline is not None)]  # type: ignore[arg-type,attr-defined]
    baseline = config.baseline  # type: ignore[attr-defined]
    if baseline is None:
        parts.append("no baseline")
    else:
        from spaces import Strategy

        parts.append(f"{baseline.source}: {Strategy.from_config(baseline.config).summary()}")
    if config.enqueue:  # type: ignore[attr-defined]
        count = len(config.enqueue)  # type: ignore[attr-defined]
        parts.append(f"{count} config{'s' if count != 1 else ''} from `enqueue`")
    warm = config.warm_start  # type: ignore[attr-defined]
    if warm is not None:
        parts.append(f"warm start from the {warm.top} best trials of study {warm.study!r}")
    return "; ".join(parts)


def _open_existing(storage_url: str):
    """Opens a storage for reading; an SQLite file that does not exist is an error, not a new DB."""
    from sqlalchemy.engine import make_url

    from search.engine import open_storage

    try:
        url = make_url(storage_url)
    except Exception:
        raise UserError(f"--storage {storage_url!r} is not a database URL; accepted: an SQLAlchemy URL such as sqlite:///search.db") from None
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:") and not Path(url.database).exists():
        raise UserError(f"no database at {url.database!r} (from --storage {storage_url}); run `search run STUDY.yaml` first or pass --storage")
    return open_storage(storage_url)


def _status(storage_url: str) -> int:
    import optuna

    storage = _open_existing(storage_url)
    summaries = optuna.get_all_study_summaries(storage, include_best_trial=True)
    if not summaries:
        print(f"no studies in {storage_url}")
        return 0
    rows = []
    for summary in summaries:
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        states = Counter(t.state.name for t in study.get_trials(deepcopy=False))
        best = summary.best_trial.value if summary.best_trial is not None else None
        metric = summary.user_attrs.get("metric", "value")
        rows.append([
            summary.study_name, summary.user_attrs.get("task", "?"), str(summary.n_trials),
            *(str(states.get(s, 0)) for s in STATE_ORDER[:4]),
            f"{metric} {best:.4f}" if best is not None else "-",
        ])
    header = ["study", "task", "trials", *(s.lower() for s in STATE_ORDER[:4]), "best"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return 0


def _best(study_name: str, storage_url: str, as_study: str | None = None) -> int:
    from optuna.trial import TrialState

    (study,) = _load_studies([study_name], storage_url)
    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not completed:
        states = Counter(t.state.name for t in study.get_trials(deepcopy=False))
        raise UserError(f"study {study_name!r} has no COMPLETE trial yet (trials by state: {dict(states) or 'none'})")
    best = study.best_trial
    metric = study.user_attrs.get("metric", "value")
    attrs = best.user_attrs
    print(f"study {study_name!r}: best trial {best.number}, {metric} = {best.value:.4f}")
    print(f"strategy: {attrs.get('strategy', '?')}")
    details = {k: attrs[k] for k in ("param_count", "epochs_trained", "wall_time_s") if k in attrs}
    if details:
        print("  " + ", ".join(f"{k} {v}" for k, v in details.items()))
    if attrs.get("metrics"):
        print("metrics (dev, last epoch): " + ", ".join(f"{k} {v:.4g}" for k, v in attrs["metrics"].items()))
    test = study.user_attrs.get("best_trial_test", {})
    if test.get("trial") == best.number:
        print("test split: " + ", ".join(f"{k} {v:.4g}" for k, v in test.items() if k != "trial"))
    _print_baseline(study)
    _print_cost_front(study, metric)
    print("config:")
    print(yaml.safe_dump(attrs.get("config", best.params), sort_keys=False, default_flow_style=False).rstrip())
    if as_study:
        _write_retrain_study(study, best, study_name, as_study)
    return 0


def _print_cost_front(study: Any, metric: str) -> None:
    """The completed trials no other is both better and faster than (search.report.cost_front)."""
    from search.report import LATENCY, cost_front

    front = cost_front(study)
    if len(front) < 2:
        return  # the best trial is also the fastest: nothing to trade
    print(f"front of {metric} against CPU latency per example (no trial both better and faster):")
    for trial in front:
        print(f"  trial {trial.number}: {metric} {trial.value:.4f}, {trial.user_attrs['metrics'][LATENCY]:.3f} ms, {trial.user_attrs.get('strategy', '?')}")


def _write_retrain_study(study: object, best: object, study_name: str, path: str) -> None:
    from search.config import fixed_study

    recorded = study.user_attrs.get("study")  # type: ignore[attr-defined]
    if not recorded or "config" not in best.user_attrs:  # type: ignore[attr-defined]
        raise UserError(f"study {study_name!r} was recorded without its study file or configs; --as-study needs both")
    name = f"{study_name}-trial{best.number}"  # type: ignore[attr-defined]
    text = yaml.safe_dump(fixed_study(recorded, best.user_attrs["config"], name), sort_keys=False)  # type: ignore[attr-defined]
    header = (
        f"# Retrains trial {best.number} of study {study_name!r} (every value fixed; one trial).\n"  # type: ignore[attr-defined]
        f"# Run: search run {path} --max-epochs N [--data-root DIR]\n"
    )
    Path(path).write_text(header + text, encoding="utf-8")
    print(f"wrote {path}: search run {path} --max-epochs N retrains this config and scores it on the test split")


def _print_baseline(study: object) -> None:
    """`baseline X, best Y (+Z)`, where the study has a baseline trial."""
    from search.start import compare_with_baseline

    comparison = compare_with_baseline(study)  # type: ignore[arg-type]
    for line in comparison.lines() if comparison else ():
        print(line)


def _load_studies(names: Sequence[str], storage_url: str) -> list:
    import optuna

    storage = _open_existing(storage_url)
    known = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
    for name in names:
        if name not in known:
            raise UserError(f"no study named {name!r} in {storage_url}; studies there: {', '.join(known) or 'none'}")
    return [optuna.load_study(study_name=name, storage=storage) for name in names]


def _report(names: Sequence[str], storage_url: str, out: str | None, table: bool) -> int:
    from search.report import format_table, strategy_table, write_report

    if not out and not table:
        raise UserError("search report needs --out DIR (HTML report) and/or --table (strategy table in the terminal)")
    studies = _load_studies(names, storage_url)
    if table:
        for study in studies:
            print(f"study {study.study_name!r} ({study.user_attrs.get('metric', 'value')}, {study.direction.name.lower()}):")
            _print_baseline(study)
            print(format_table(strategy_table(study)))
            print()
    if out:
        if not table:
            for study in studies:
                print(f"study {study.study_name!r}:")
                _print_baseline(study)
        print(f"wrote {write_report(studies, out)}")
    return 0


def _export(name: str, storage_url: str, top: int, trial_number: int | None, fmt: str, out: str | None) -> int:
    import json

    from optuna.trial import TrialState

    from search.export import cli_command, hf_training_arguments, training_document

    (study,) = _load_studies([name], storage_url)
    trials = study.get_trials(deepcopy=False)
    if trial_number is not None:
        chosen = [t for t in trials if t.number == trial_number]
        if not chosen:
            raise UserError(f"study {name!r} has no trial {trial_number}; its trials are numbered 0 to {len(trials) - 1}")
        if "config" not in chosen[0].user_attrs:
            raise UserError(f"trial {trial_number} of study {name!r} has no recorded config (state {chosen[0].state.name})")
    else:
        if top < 1:
            raise UserError(f"--top {top}: give a number >= 1")
        completed = [t for t in trials if t.state == TrialState.COMPLETE and "config" in t.user_attrs]
        if not completed:
            raise UserError(f"study {name!r} has no COMPLETE trial to export")
        maximize = study.direction.name == "MAXIMIZE"
        chosen = sorted(completed, key=lambda t: t.value, reverse=maximize)[:top]
    documents = [training_document(study, t) for t in chosen]
    if fmt == "hf":
        documents = [{"study": d["study"], "trial": d["trial"], **hf_training_arguments(d)} for d in documents]
    payload = documents[0] if len(documents) == 1 else documents
    if fmt == "cli":
        text = "\n\n".join(cli_command(d) for d in documents)
    else:
        text = json.dumps(payload, indent=2) if fmt != "yaml" else yaml.safe_dump(payload, sort_keys=False)
    if out:
        Path(out).write_text(text, encoding="utf-8")
        print(f"wrote {out}: trial(s) {', '.join(str(d['trial']) for d in documents)} of study {name!r}")
    else:
        print(text)
    return 0


def _train(args: argparse.Namespace) -> int:
    from search import StudyFileError
    from search.export import DOCUMENT_FIELDS
    from search.train import FLAGS, document_from_flags, train_document

    config_file = args.config_file
    document = None
    if config_file is not None:
        try:
            document = yaml.safe_load(Path(config_file).read_text(encoding="utf-8"))
        except (FileNotFoundError, IsADirectoryError):
            raise StudyFileError(config_file, "", "no such file; give a file written by `search export --format yaml`") from None
        except yaml.YAMLError as error:
            raise StudyFileError(config_file, "", f"is not valid YAML or JSON: {str(error).splitlines()[0]}") from None
        if isinstance(document, list):
            raise StudyFileError(config_file, "", "holds several trials; export one (--trial N, or --top 1) to train it")
        if not isinstance(document, dict):
            raise StudyFileError(config_file, "", "is not an exported training config (a mapping)")
        unknown = set(document) - set(DOCUMENT_FIELDS)
        if unknown:
            raise StudyFileError(config_file, sorted(unknown)[0], f"unknown field; accepted: {', '.join(DOCUMENT_FIELDS)}")
    elif not (args.task or args.settings):
        raise UserError("search train needs CONFIG.yaml (from `search export --format yaml`) or the config as flags (from `search export --format cli`)")
    if args.max_epochs is not None and args.max_epochs < 1:
        raise UserError(f"--max-epochs {args.max_epochs}: give a number >= 1")
    document = document_from_flags(document, task=args.task, metric=args.metric, seed=args.seed, data=args.data, settings=args.settings)
    import datasets

    datasets.disable_progress_bars()
    # Errors name the file's fields, or the flags where the config (partly) came from flags.
    path = config_file if config_file is not None and not args.settings else FLAGS
    result = train_document(document, path=path, out_dir=args.out, data_root=args.data_root, max_epochs=args.max_epochs)
    print(f"wrote {args.out}/model.safetensors, vocab.json, metrics.json, config.yaml")
    return 0 if result else 1


def _dashboard(storage_url: str, host: str, port: int) -> int:
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    from optuna_dashboard import wsgi

    from search.engine import display_url

    class ThreadedServer(ThreadingMixIn, WSGIServer):
        daemon_threads = True  # one slow request (a large study) does not hold up the others

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # one line per request is noise here
            pass

    storage = _open_existing(storage_url)
    warning = _unauthenticated_exposure(host, port)
    if warning:
        print(f"search: warning: {warning}", file=sys.stderr, flush=True)
    try:
        server = make_server(host, port, wsgi(storage), server_class=ThreadedServer, handler_class=QuietHandler)
    except OSError as error:
        raise UserError(f"cannot serve on {host}:{port}: {error.strerror or error}; pick another --port") from None
    print(f"optuna-dashboard on http://{host}:{port}/dashboard for {display_url(storage_url)} (Ctrl-C stops it)", flush=True)
    server.serve_forever()
    return 0


def _unauthenticated_exposure(host: str, port: int) -> str | None:
    """What serving the dashboard on `host` exposes, or None when only this machine can reach it
    (every address `host` names is loopback). An unresolvable name is left to the server to refuse."""
    import ipaddress
    import socket

    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)}
    except (OSError, UnicodeError):
        return None
    if addresses and all(ipaddress.ip_address(address.split("%")[0]).is_loopback for address in addresses):
        return None
    return (
        f"--host {host} serves beyond this machine, and optuna-dashboard has no authentication: anyone who reaches "
        f"port {port} can read every study in this database and change or delete them. Serve on 127.0.0.1 and reach it "
        "through an SSH tunnel or an authenticating proxy (README: \"The dashboard on a network\")"
    )


if __name__ == "__main__":
    sys.exit(main())
