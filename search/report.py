"""What a finished search says, read from the Optuna DB: the strategy table and an HTML report.

The strategy table answers "did focal loss beat cross-entropy on this task?": for every strategy
dimension (each choice family, each add-on and regularizer switched on or off) and each choice,
how many trials used it, how many completed or were pruned, and the best and median score of
the completed ones (pruned trials stopped early, so their scores are not comparable).
"""

from __future__ import annotations

import html
import statistics
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState


@dataclass(frozen=True)
class StrategyRow:
    dimension: str  # "loss", "addons/mhsa", ...
    choice: str  # "focal", "on", "off", ...
    trials: int
    completed: int
    pruned: int
    failed: int
    best: float | None
    median: float | None


def _choices(config: dict) -> dict[str, str]:
    """dimension -> choice for one trial's resolved config."""
    out = {}
    for family, entry in config.items():
        if family in ("train", "model") or not isinstance(entry, dict):
            continue
        if "name" in entry:
            out[family] = str(entry["name"])
        else:
            for name, params in entry.items():
                if isinstance(params, dict) and "enabled" in params:
                    out[f"{family}/{name}"] = "on" if params["enabled"] else "off"
    for key, group in (("batch_size", "train"), ("embedding_dim", "model")):
        if key in config.get(group, {}):
            out[key] = str(config[group][key])
    return out


def strategy_table(study: optuna.Study) -> list[StrategyRow]:
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    groups: dict[tuple[str, str], list[FrozenTrial]] = {}
    for trial in study.get_trials(deepcopy=False):
        config = trial.user_attrs.get("config")
        if not isinstance(config, dict) or not trial.state.is_finished():
            continue
        for dimension, choice in _choices(config).items():
            groups.setdefault((dimension, choice), []).append(trial)
    rows = []
    for (dimension, choice), trials in sorted(groups.items()):
        scores = [t.value for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
        rows.append(StrategyRow(
            dimension, choice, len(trials),
            sum(t.state == TrialState.COMPLETE for t in trials),
            sum(t.state == TrialState.PRUNED for t in trials),
            sum(t.state == TrialState.FAIL for t in trials),
            (max(scores) if maximize else min(scores)) if scores else None,
            statistics.median(scores) if scores else None,
        ))
    return rows


_HEADER = ("dimension", "choice", "trials", "complete", "pruned", "fail", "best", "median")


def _cells(row: StrategyRow) -> list[str]:
    fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    return [row.dimension, row.choice, str(row.trials), str(row.completed), str(row.pruned), str(row.failed), fmt(row.best), fmt(row.median)]


def format_table(rows: Sequence[StrategyRow]) -> str:
    lines = [list(_HEADER), *(_cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(_HEADER))]
    out = []
    previous = None
    for line in lines:
        if previous is not None and line[0] != previous and previous != "dimension":
            out.append("")
        out.append("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())
        previous = line[0]
    return "\n".join(out)


def _table_html(rows: Sequence[StrategyRow]) -> str:
    head = "".join(f"<th>{h}</th>" for h in _HEADER)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in _cells(r)) + "</tr>" for r in rows)
    return f"<table class='strategy'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_report(studies: Sequence[optuna.Study], out_dir: str | Path) -> Path:
    """One self-contained HTML page (plotly.js inlined once): per study its optimization history,
    learning curves (pruned trials included), parameter importances, parallel coordinates and the
    strategy table; with several studies, their histories overlaid first."""
    from optuna import visualization as vis

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sections: list[str] = []
    first = True

    def figure(title: str, make) -> None:
        nonlocal first
        try:
            with warnings.catch_warnings():  # importances warn on small regimes; the plot still says what it can
                warnings.simplefilter("ignore", UserWarning)
                fig = make()
        except (ValueError, RuntimeError) as error:  # e.g. importances with too few completed trials
            sections.append(f"<h3>{html.escape(title)}</h3><p class='note'>not available: {html.escape(str(error))}</p>")
            return
        fig.update_layout(title=title)
        sections.append(fig.to_html(full_html=False, include_plotlyjs=first))
        first = False

    if len(studies) > 1:
        figure("Optimization histories, overlaid", lambda: vis.plot_optimization_history(list(studies)))
    for study in studies:
        metric = study.user_attrs.get("metric", "objective")
        sections.append(f"<h2>Study {html.escape(study.study_name)} ({html.escape(metric)}, {study.direction.name.lower()})</h2>")
        figure(f"{study.study_name}: optimization history", lambda s=study, m=metric: vis.plot_optimization_history(s, target_name=m))
        figure(f"{study.study_name}: learning curves (intermediate values, pruned trials included)", lambda s=study: vis.plot_intermediate_values(s))
        figure(f"{study.study_name}: parameter importances", lambda s=study, m=metric: vis.plot_param_importances(s, target_name=m))
        figure(f"{study.study_name}: parallel coordinates", lambda s=study, m=metric: vis.plot_parallel_coordinate(s, target_name=m))
        sections.append(f"<h3>{html.escape(study.study_name)}: strategy table</h3>" + _table_html(strategy_table(study)))
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>search report</title>"
        "<style>body{font-family:sans-serif;margin:2em}table.strategy{border-collapse:collapse}"
        "table.strategy td,table.strategy th{border:1px solid #ccc;padding:2px 8px;text-align:right}"
        "table.strategy td:first-child,table.strategy td:nth-child(2){text-align:left}.note{color:#777}</style>"
        "</head><body><h1>Strategy search report</h1>" + "".join(sections) + "</body></html>"
    )
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
