"""What a finished search says, read from the Optuna DB: the strategy table and an HTML report.

The strategy table answers "did focal loss beat cross-entropy on this task?": for every strategy
dimension (each choice family, each add-on and regularizer switched on or off) and each choice,
how many trials used it, how many completed or were pruned, and the best and median score of
the completed ones (pruned trials stopped early, so their scores are not comparable).
"""

from __future__ import annotations

import html
import math
import statistics
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from spaces import Strategy

if TYPE_CHECKING:
    import plotly.graph_objects as go


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


def strategy_table(study: optuna.Study) -> list[StrategyRow]:
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    groups: dict[tuple[str, str], list[FrozenTrial]] = {}
    for trial in study.get_trials(deepcopy=False):
        config = trial.user_attrs.get("config")
        if not isinstance(config, dict) or not trial.state.is_finished():
            continue
        for dimension, choice in Strategy.from_config(config).dimensions().items():
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


def _integer_axis(largest: int) -> dict:
    """Axis ticks on whole numbers only (epochs, trial numbers), about a dozen at most."""
    return {"tick0": 0, "dtick": max(1, math.ceil(largest / 12))}


# Trial states in the learning curves: completed solid, pruned dashed, failed dotted.
_STATE_STYLE = {
    TrialState.COMPLETE: ("#1f77b4", "solid"),
    TrialState.PRUNED: ("#ff7f0e", "dash"),
    TrialState.FAIL: ("#d62728", "dot"),
}


def learning_curves(study: optuna.Study, metric: str = "objective") -> go.Figure:
    """One line per trial over epochs, styled by how it ended, so pruned trials stand out."""
    from optuna import visualization as vis

    fig = vis.plot_intermediate_values(study)
    states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
    shown: set[TrialState] = set()
    for trace in fig.data:
        number = int(str(trace.name).removeprefix("Trial")) if str(trace.name).startswith("Trial") else None
        state = states.get(number) if number is not None else None
        if state not in _STATE_STYLE:
            continue
        colour, dash = _STATE_STYLE[state]
        trace.update(
            name=state.name.lower(), legendgroup=state.name, showlegend=state not in shown,
            line={"color": colour, "dash": dash}, marker={"color": colour},
            hovertemplate=f"trial {number} ({state.name.lower()})<br>epoch %{{x}}: %{{y}}<extra></extra>",
        )
        shown.add(state)
    last_epoch = max((max(t.intermediate_values, default=1) for t in study.get_trials(deepcopy=False)), default=1)
    fig.update_layout(showlegend=True, xaxis_title="epoch", yaxis_title=f"{metric} (dev)", xaxis=_integer_axis(last_epoch))
    return fig


def overlaid_histories(studies: Sequence[optuna.Study]) -> go.Figure:
    """Per study, its best-so-far line over trial numbers (and its completed trials' values as dots)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    colours = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
    metrics, last = [], 0
    for index, study in enumerate(studies):
        colour = colours[index % len(colours)]
        metric = study.user_attrs.get("metric", "objective")
        metrics.append(metric)
        maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
        completed = sorted(
            (t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None), key=lambda t: t.number
        )
        best: list[float] = []
        for trial in completed:
            value = float(trial.value)  # type: ignore[arg-type]
            best.append(value if not best else (max if maximize else min)(best[-1], value))
        numbers = [t.number for t in completed]
        last = max([last, *numbers])
        label = f"{study.study_name} ({metric}, {study.direction.name.lower()})"
        fig.add_trace(go.Scatter(x=numbers, y=best, mode="lines", name=f"{label}: best so far", legendgroup=study.study_name,
                                 line={"color": colour, "width": 2, "shape": "hv"}))
        fig.add_trace(go.Scatter(x=numbers, y=[t.value for t in completed], mode="markers", name=f"{label}: completed trials",
                                 legendgroup=study.study_name, marker={"color": colour, "size": 6, "opacity": 0.45}))
    fig.update_layout(xaxis_title="trial number", yaxis_title=" / ".join(dict.fromkeys(metrics)) + " (dev)", xaxis=_integer_axis(last))
    return fig


# The footprint a trial reports (trainables.footprint) that the report sets against its score.
LATENCY = "latency_ms_b1"


def cost_front(study: optuna.Study, cost: str = LATENCY) -> list[FrozenTrial]:
    """The completed trials no other completed trial beats on both its score and `cost` (a metric
    of its last epoch to minimise, latency per example by default), cheapest first."""
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    points = [
        (t, float(t.value) if maximize else -float(t.value), float(t.user_attrs["metrics"][cost]))
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.value is not None and cost in t.user_attrs.get("metrics", {})
    ]
    return [t for t, _, _ in nondominated(points)]


def nondominated(points: Sequence[tuple[Any, float, float]]) -> list[tuple[Any, float, float]]:
    """The (item, score, cost) points that no other point beats on both (a score as high, a cost as
    low, and not the same pair), cheapest first."""
    front = [
        (item, score, cost) for item, score, cost in points
        if not any(s2 >= score and c2 <= cost and (s2, c2) != (score, cost) for _, s2, c2 in points)
    ]
    return sorted(front, key=lambda point: point[2])


def score_against_cost(study: optuna.Study, metric: str = "objective", cost: str = LATENCY) -> go.Figure:
    """Every completed trial's score against its `cost`, the front (`cost_front`) drawn as a line."""
    import plotly.graph_objects as go

    completed = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None and cost in t.user_attrs.get("metrics", {})]
    if not completed:
        raise ValueError(f"no completed trial reports {cost}")
    front = cost_front(study, cost)
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=[t.user_attrs["metrics"][cost] for t in completed], y=[t.value for t in completed], mode="markers", name="completed trials",
        text=[f"trial {t.number}: {t.user_attrs.get('strategy', '')}" for t in completed], marker={"color": "#1f77b4", "opacity": 0.5},
    ))
    fig.add_trace(go.Scatter(
        x=[t.user_attrs["metrics"][cost] for t in front], y=[t.value for t in front], mode="lines+markers", name="front",
        text=[f"trial {t.number}: {t.user_attrs.get('strategy', '')}" for t in front], line={"color": "#d62728", "shape": "hv"},
    ))
    fig.update_layout(xaxis_title=f"{cost} (CPU, per example)", yaxis_title=f"{metric} (dev)")
    return fig


def _front_html(study: optuna.Study, metric: str) -> str:
    front = cost_front(study)
    if not front:
        return ""
    rows = "".join(
        f"<tr><td>{t.number}</td><td>{t.value:.4f}</td><td>{t.user_attrs['metrics'][LATENCY]:.3f}</td>"
        f"<td>{t.user_attrs['metrics'].get('nonzero_params', float('nan')):,.0f}</td><td>{t.user_attrs['metrics'].get('model_bytes', float('nan')):,.0f}</td>"
        f"<td>{html.escape(str(t.user_attrs.get('strategy', '')))}</td></tr>"
        for t in front
    )
    return (f"<h3>{html.escape(study.study_name)}: the front of {html.escape(metric)} against latency</h3><table class='strategy'>"
            f"<tr><th>trial</th><th>{html.escape(metric)}</th><th>ms / example (batch 1)</th><th>non-zero params</th><th>bytes</th><th>strategy</th></tr>{rows}</table>")


def _baseline_html(study: optuna.Study) -> str:
    """`baseline X, best Y (+Z)` (search.start), or nothing for a study without a baseline."""
    from search.start import compare_with_baseline

    comparison = compare_with_baseline(study)
    if comparison is None:
        return ""
    return "<p class='baseline'>" + "<br>".join(html.escape(line.strip()) for line in comparison.lines()) + "</p>"


def write_report(studies: Sequence[optuna.Study], out_dir: str | Path) -> Path:
    """One self-contained HTML page (plotly.js inlined once): per study its optimization history,
    learning curves (pruned trials included), parameter importances, parallel coordinates, its score
    against CPU latency with the front listed, and the strategy table; with several studies, their
    histories overlaid first."""
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
        figure("Optimization histories, overlaid (best so far per study)", lambda: overlaid_histories(studies))
    for study in studies:
        metric = study.user_attrs.get("metric", "objective")
        sections.append(f"<h2>Study {html.escape(study.study_name)} ({html.escape(metric)}, {study.direction.name.lower()})</h2>")
        sections.append(_baseline_html(study))
        figure(f"{study.study_name}: optimization history", lambda s=study, m=metric: vis.plot_optimization_history(s, target_name=m)
               .update_layout(xaxis=_integer_axis(len(s.trials))))
        figure(f"{study.study_name}: learning curves (intermediate values, pruned trials included)", lambda s=study, m=metric: learning_curves(s, m))
        figure(f"{study.study_name}: parameter importances", lambda s=study, m=metric: vis.plot_param_importances(s, target_name=m))
        figure(f"{study.study_name}: parallel coordinates", lambda s=study, m=metric: vis.plot_parallel_coordinate(s, target_name=m))
        if cost_front(study):  # studies run before trials measured latency have none to draw
            figure(f"{study.study_name}: {metric} against CPU latency per example (the front: no trial both better and faster)",
                   lambda s=study, m=metric: score_against_cost(s, m))
            sections.append(_front_html(study, metric))
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
