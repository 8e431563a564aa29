"""The strategy table, the HTML report and the dashboard, on a database made with Optuna alone."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from search.report import cost_front, format_table, strategy_table, write_report
from tests.conftest import REPO_ROOT

optuna.logging.set_verbosity(optuna.logging.WARNING)

# (loss, mhsa on?, state, value) per trial, as the engine would record them.
TRIALS = [
    ("focal", True, TrialState.COMPLETE, 0.80),
    ("focal", False, TrialState.COMPLETE, 0.70),
    ("focal", True, TrialState.PRUNED, 0.50),
    ("cross_entropy", False, TrialState.COMPLETE, 0.75),
    ("cross_entropy", True, TrialState.FAIL, None),
]


def make_study(db: Path, name: str = "table") -> optuna.Study:
    study = optuna.create_study(study_name=name, storage=f"sqlite:///{db}", direction="maximize")
    study.set_user_attr("metric", "accuracy")
    for number, (loss, mhsa, state, value) in enumerate(TRIALS):
        trial = study.ask({"loss/name": optuna.distributions.CategoricalDistribution(["focal", "cross_entropy"])})
        trial.set_user_attr("config", {
            "encoder": {"name": "textcnn", "textcnn": {"filters": 64}},
            "addons": {"mhsa": {"enabled": mhsa}},
            "loss": {"name": loss},
            "train": {"batch_size": 32}, "model": {"embedding_dim": 128},
        })
        if value is not None:
            trial.report(value - 0.1, 1)
            trial.report(value, 2)
        if state == TrialState.COMPLETE:
            study.tell(trial, value)
        else:
            study.tell(trial, state=state)
    return study


def test_strategy_table_counts_match_the_db(tmp_path: Path) -> None:
    rows = {(r.dimension, r.choice): r for r in strategy_table(make_study(tmp_path / "r.db"))}
    focal = rows[("loss", "focal")]
    assert (focal.trials, focal.completed, focal.pruned, focal.failed) == (3, 2, 1, 0)
    assert focal.best == pytest.approx(0.80) and focal.median == pytest.approx(0.75)
    ce = rows[("loss", "cross_entropy")]
    assert (ce.trials, ce.completed, ce.pruned, ce.failed, ce.best) == (2, 1, 0, 1, pytest.approx(0.75))
    on, off = rows[("addons/mhsa", "on")], rows[("addons/mhsa", "off")]
    assert (on.trials, on.completed, on.best) == (3, 1, pytest.approx(0.80))
    assert (off.trials, off.completed, off.median) == (2, 2, pytest.approx(0.725))
    assert rows[("encoder", "textcnn")].trials == 5 and rows[("batch_size", "32")].trials == 5
    text = format_table(list(rows.values()))
    assert "loss" in text and "focal" in text and "0.8000" in text


def test_html_report_has_every_plot_and_the_table(tmp_path: Path) -> None:
    studies = [make_study(tmp_path / "r.db", "one"), make_study(tmp_path / "r.db", "two")]
    page = write_report(studies, tmp_path / "out").read_text()
    assert page.count("* plotly.js v") == 1  # plotly.js inlined once: the page needs no network
    for title in ("Optimization histories, overlaid", "one: optimization history", "one: learning curves", "one: parallel coordinates", "two: strategy table"):
        assert title in page
    assert "<table class='strategy'>" in page and "cross_entropy" in page


def test_the_front_of_score_against_latency_keeps_the_trials_none_beats_on_both(tmp_path: Path) -> None:
    study = optuna.create_study(study_name="front", storage=f"sqlite:///{tmp_path / 'f.db'}", direction="maximize")
    study.set_user_attr("metric", "accuracy")
    # (accuracy, ms per example): 1 beats 0 on both; 2 is the fastest; 3 the most accurate; 4 ties 2's
    # latency with a lower score; 5 reports no latency (a run from before the footprint).
    points = [(0.80, 2.0), (0.82, 1.5), (0.70, 0.3), (0.90, 5.0), (0.60, 0.3), (0.95, None)]
    for accuracy, latency in points:
        metrics = {"accuracy": accuracy, "nonzero_params": 1000, "model_bytes": 4000}
        if latency is not None:
            metrics["latency_ms_b1"] = latency
        study.add_trial(optuna.trial.create_trial(value=accuracy, user_attrs={"metrics": metrics, "strategy": "bilstm"}))
    assert [t.number for t in cost_front(study)] == [2, 1, 3]
    page = write_report([study], tmp_path / "out").read_text()
    assert "front: accuracy against CPU latency per example" in page and "the front of accuracy against latency" in page
    # `search best` prints the front beside the best trial.
    shown = run_cli("best", "front", "--storage", f"sqlite:///{tmp_path / 'f.db'}", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    start = lines.index("front of accuracy against CPU latency per example (no trial both better and faster):")
    assert [line.split(":")[0].strip() for line in lines[start + 1:start + 4]] == ["trial 2", "trial 1", "trial 3"]


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "search.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "PYTHONPATH": str(REPO_ROOT)})


def test_report_cli_table_and_errors(tmp_path: Path) -> None:
    make_study(tmp_path / "r.db")
    storage = f"sqlite:///{tmp_path / 'r.db'}"
    table = run_cli("report", "table", "--storage", storage, "--table", cwd=tmp_path)
    assert table.returncode == 0 and "focal" in table.stdout and "mhsa" in table.stdout
    assert run_cli("report", "table", "--storage", storage, cwd=tmp_path).returncode == 2
    unknown = run_cli("report", "nope", "--storage", storage, "--table", cwd=tmp_path)
    assert unknown.returncode == 2 and "no study named 'nope'" in unknown.stderr and "Traceback" not in unknown.stderr


def dashboard_study(storage: str, study_name: str, cwd: Path) -> tuple[list[dict], dict]:
    """Starts `search dashboard` on a free loopback port and returns (its /api/studies list, the
    study's detail from /api/studies/ID, trials and their user attributes included)."""
    import json

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "search.cli", "dashboard", "--storage", storage, "--port", str(port)],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**__import__("os").environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        studies = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and studies is None:
            try:
                studies = json.loads(urllib.request.urlopen(f"{base}/api/studies", timeout=2).read())["study_summaries"]
            except OSError:
                time.sleep(0.5)
        assert studies is not None, "the dashboard did not answer"
        (study_id,) = [s["study_id"] for s in studies if s["study_name"] == study_name]
        detail = json.loads(urllib.request.urlopen(f"{base}/api/studies/{study_id}", timeout=10).read())
        return studies, detail
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_dashboard_serves_the_study_on_loopback(tmp_path: Path) -> None:
    make_study(tmp_path / "r.db")
    studies, detail = dashboard_study(f"sqlite:///{tmp_path / 'r.db'}", "table", tmp_path)
    assert [s["study_name"] for s in studies] == ["table"]
    assert [t["state"] for t in detail["trials"]] == ["Complete", "Complete", "Pruned", "Complete", "Fail"]
    assert all(any(a["key"] == "config" for a in t["user_attrs"]) for t in detail["trials"])


HF_CASES = {  # optimizer, schedule, loss: every mapped optimizer and schedule, and the losses that map
    "adamw cosine focal": ("adamw", {"cosine": {"warmup_fraction": 0.1}}, {"focal": {"gamma": 2.0}}),
    "sgd plateau cross_entropy": ("sgd", {"plateau": {"factor": 0.5, "patience": 1}}, {"cross_entropy": {}}),
    "rmsprop linear label_smoothing": ("rmsprop", {"linear": {"warmup_fraction": 0.0}}, {"label_smoothing": {"epsilon": 0.1}}),
    "adagrad constant ghm": ("adagrad", {"constant": {}}, {"ghm": {"bins": 10, "momentum": 0.5}}),
    "radam step": ("radam", {"step": {"step_size": 2, "gamma": 0.5}}, {"cross_entropy": {}}),
}


@pytest.mark.parametrize("case", list(HF_CASES))
def test_hf_fields_load_into_training_arguments_where_transformers_is_installed(case: str, tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers", reason="transformers is not a dependency; install it to check the hf export end to end")
    from search.export import hf_training_arguments

    optimizer, schedule, loss = HF_CASES[case]
    (schedule_name, schedule_params), (loss_name, loss_params) = next(iter(schedule.items())), next(iter(loss.items()))
    document = {"max_epochs": 3, "seed": 0, "config": {
        "encoder": {"name": "textcnn", "textcnn": {"filters": 64}}, "loss": {"name": loss_name, loss_name: loss_params},
        "regularizers": {"weight_decay": {"enabled": True, "decay": 0.01}, "grad_clip": {"enabled": True, "max_norm": 1.0}},
        "optimizer": {"name": optimizer, optimizer: {"lr": 1e-3}},
        "schedule": {"name": schedule_name, schedule_name: schedule_params}, "train": {"batch_size": 32}, "model": {"embedding_dim": 128}}}
    exported = hf_training_arguments(document)
    arguments = transformers.TrainingArguments(output_dir=str(tmp_path), report_to="none", **exported["fields"])
    assert arguments.learning_rate == 1e-3 and arguments.per_device_train_batch_size == 32 and arguments.max_grad_norm == 1.0
    assert exported["unmapped"]["encoder"]["name"] == "textcnn"  # never silently dropped
    if loss_name in ("focal", "ghm"):
        assert exported["unmapped"]["loss"] == {"name": loss_name, **loss_params}
    if optimizer == "radam" or schedule_name == "step":
        assert {"optimizer", "schedule"} & set(exported["unmapped"])


def test_export_and_train_refuse_bad_input(tmp_path: Path) -> None:
    make_study(tmp_path / "r.db")
    storage = f"sqlite:///{tmp_path / 'r.db'}"
    out_of_range = run_cli("export", "table", "--storage", storage, "--trial", "99", cwd=tmp_path)
    assert out_of_range.returncode == 2 and "no trial 99" in out_of_range.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: text_classification\nmetric: accuracy\nconfig: {}\ndata: {}\nlearning_rate: 3\n")
    refused = run_cli("train", str(bad), cwd=tmp_path)
    assert refused.returncode == 2 and "learning_rate" in refused.stderr and "unknown field" in refused.stderr
    assert "Traceback" not in refused.stderr


def valid_document() -> dict:
    """A training document as `search export --format yaml` writes it, for the toy study's space."""
    import yaml

    from search.export import flatten
    from spaces import TEXT_CLASSIFICATION, build_space, suggest, unflatten
    from tests.conftest import toy_study_yaml

    raw = yaml.safe_load(toy_study_yaml("sqlite:///unused.db"))
    space = build_space(raw["space"], TEXT_CLASSIFICATION)
    config = unflatten(suggest(optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3)).ask(), space))
    assert flatten(config)["loss/name"] == "focal" and flatten(config)["optimizer/name"] == "sgd"  # the cases below rely on it
    return {"study": "toy", "trial": 0, "value": 0.9, "metric": "accuracy", "task": "text_classification", "seed": 0,
            "max_epochs": 2, "data": raw["data"], "config": config}


def _flags(document: dict) -> list[str]:
    import json

    from search.export import flatten

    return ["--task", document["task"], "--metric", document["metric"], "--max-epochs", "2", "--data", json.dumps(document["data"]),
            *(arg for key, value in flatten(document["config"]).items() for arg in ("--set", f"{key}={json.dumps(value) if not isinstance(value, str) else value}"))]


# Each: how to call `search`, and what the one-line message must say. "DOC" is a valid exported file.
BAD_CALLS = {
    "export unknown study": (["export", "nope"], ["no study named 'nope'", "studies there: table"]),
    "export trial out of range": (["export", "table", "--trial", "99"], ["no trial 99", "numbered 0 to 4"]),
    "export --top 0": (["export", "table", "--top", "0"], ["--top 0", ">= 1"]),
    "report unknown study": (["report", "table", "nope", "--table"], ["no study named 'nope'"]),
    "train without config": (["train"], ["needs CONFIG.yaml", "--format cli"]),
    "train missing file": (["train", "absent.yaml"], ["absent.yaml", "no such file"]),
    "train unknown top-level field": (["train", "DOC", "+learning_rate: 3"], ["`learning_rate`", "unknown field", "accepted: study, trial"]),
    "train unknown loss in file": (["train", "DOC", "loss/name=hinge"], ["`config.loss.name`", "'hinge' is not a known loss", "accepted: cross_entropy, focal"]),
    "train unknown parameter in file": (["train", "DOC", "loss/focal/gama=2"], ["`config.loss.focal.gama`", "no parameter 'gama'", "its parameters: gamma"]),
    "train out-of-range value in file": (["train", "DOC", "optimizer/sgd/lr=-1"], ["`config.optimizer.sgd.lr`", "-1", "> 0"]),
    "flags: unknown parameter": (["FLAGS", "--set", "loss/focal/gama=2"], ["`--set loss/focal/gama`", "no parameter 'gama'"]),
    "flags: other optimizer without its lr": (["FLAGS", "--set", "optimizer/name=adam"], ["`--set optimizer/adam/lr`", "missing"]),
    "flags: not KEY=VALUE": (["FLAGS", "--set", "loss"], ["`--set loss`", "expected KEY=VALUE"]),
    "flags: a section over a value": (["FLAGS", "--set", "loss/name/x=1"], ["`--set loss/name/x`", "config.loss.name takes one value"]),
    "flags: bad --data": (["FLAGS", "--data", "[1"], ["`--data`", "not JSON or YAML"]),
    "flags: no task": (["train", "--set", "loss/name=focal"], ["`task`", "pass --task"]),
}


@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_bad_input_gives_one_line_and_exit_2(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    from search.cli import main
    from search.export import flatten
    from spaces import unflatten
    from tests.search_tests.test_cli import snapshot

    make_study(tmp_path / "r.db")
    before = snapshot(tmp_path / "r.db")
    argv, expected = BAD_CALLS[case]
    document = valid_document()
    if argv[0] == "FLAGS":  # a valid config as flags, then the bad flag (argparse: the last --data wins)
        argv = ["train", *_flags(document), *argv[1:]]
    elif argv[1:2] == ["DOC"]:  # a valid exported file, with one change
        change = argv[2]
        if change.startswith("+"):
            document.update(yaml.safe_load(change[1:]))
        else:
            key, _, value = change.partition("=")
            document["config"] = unflatten({**flatten(document["config"]), key: yaml.safe_load(value)})
        path = tmp_path / "doc.yaml"
        path.write_text(yaml.safe_dump(document))
        argv = ["train", str(path)]
    if argv[0] in ("export", "report"):
        argv = [*argv, "--storage", f"sqlite:///{tmp_path / 'r.db'}"]
    code = main([*argv, "--out", str(tmp_path / "out")] if argv[0] == "train" else argv)
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("search: error: ") and err.count("\n") == 1, err  # one paragraph, no traceback
    for fragment in expected:
        assert fragment in err, err
    assert snapshot(tmp_path / "r.db") == before
    assert not (tmp_path / "out" / "model.safetensors").exists()


DASHBOARD_WARNING = "optuna-dashboard has no authentication"


@pytest.mark.parametrize(("host", "warns"), [("0.0.0.0", True), ("127.0.0.1", False), ("localhost", False)])
def test_dashboard_warns_when_it_serves_beyond_loopback(host: str, warns: bool, tmp_path: Path) -> None:
    make_study(tmp_path / "r.db")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "search.cli", "dashboard", "--storage", f"sqlite:///{tmp_path / 'r.db'}", "--host", host, "--port", str(port)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**__import__("os").environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    try:
        deadline, served = time.monotonic() + 60, False
        while time.monotonic() < deadline and not served and process.poll() is None:
            try:
                served = urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2).status == 200
            except OSError:
                time.sleep(0.5)
        assert served, "the dashboard did not answer"
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    warnings = [line for line in stderr.splitlines() if line.startswith("search: warning:")]
    if warns:
        assert len(warnings) == 1 and DASHBOARD_WARNING in warnings[0] and f"--host {host}" in warnings[0], stderr
        assert "SSH tunnel" in warnings[0] and "authenticating proxy" in warnings[0]
    else:
        assert warnings == [], stderr
