"""What a study file says about how its search starts, read and checked without running a search:
the baseline, `enqueue:`, `warm_start:` and `sampler:`, and what the engine enqueues in the DB."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

import studies
from search.cli import main
from search.config import StudyFileError, fixed_study, load_study_file, parse_study
from search.engine import open_storage, prepare_study
from search.recovery import reconcile_orphans
from search.scheduler import FullBudgetASHA
from search.start import (
    BASELINE_ATTR, QUEUED_ATTR, VARIATION_SOURCE, compare_with_baseline, effective_sampler, load_warm_start, queue_first_trials, read_baseline,
    startup_plan,
)
from search.sampler import build_sampler
from search.tasks import TASKS, get_task
from spaces import Strategy, flatten, suggest, unflatten
from tests.conftest import ner_study_yaml, toy_study_yaml
from tests.search_tests.test_recovery import dead_driver

optuna.logging.set_verbosity(optuna.logging.WARNING)

BASE = toy_study_yaml("sqlite:///x.db")


def study_with(tmp_path: Path, fields: str, base: str = BASE) -> Path:
    """The toy study with `fields` (top-level YAML) added before its space."""
    path = tmp_path / "study.yaml"
    path.write_text(base.replace("\nspace:", f"\n{fields}\nspace:", 1))
    return path


# --- the baseline -------------------------------------------------------------------------------


@pytest.mark.parametrize("task_name", list(TASKS))
def test_published_baselines_are_valid_configs_of_their_task(task_name: str) -> None:
    task = get_task(task_name)
    assert task.baselines, f"task {task_name} publishes no baseline"
    # A published baseline lists the add-ons and regularizers it uses; every other one is off.
    off = {family: {name: {"enabled": False} for name in reg.names()} for family, reg in task.registries.items() if reg.kind == "toggle"}
    for name, config in task.baselines.items():
        Strategy.check(unflatten({**flatten(off), **flatten(config)}), task.registries, task=task_name, offers=task.offers)
        strategy = Strategy.from_config(config)
        # What the research does not give, the same for every task.
        assert strategy.optimizer == ("adam", {"lr": 1e-3}) and strategy.loss == ("cross_entropy", {})
        assert strategy.schedule[0] == "constant" and strategy.batch_size == 64 and list(strategy.regularizers) == ["dropout"]


def test_an_omitted_baseline_is_the_task_default_fitted_to_the_space(tmp_path: Path) -> None:
    config = load_study_file(study_with(tmp_path, ""))
    baseline = config.baseline
    assert baseline is not None and baseline.source == "baseline (task default: published textcnn)"
    strategy = Strategy.from_config(baseline.config)
    # The published TextCNN, at the sizes this space fixes, and the learning rate its range allows.
    assert strategy.encoder == ("textcnn", {"filters": 32, "layers": 1})
    assert strategy.optimizer == ("adam", {"lr": 0.003}) and strategy.regularizers == {"dropout": {"p": 0.5}}
    assert (strategy.batch_size, strategy.embedding_dim) == (32, 32)
    assert set(baseline.adapted) == {
        "encoder/textcnn/filters: 128 -> 32", "optimizer/adam/lr: 0.001 -> 0.003", "train/batch_size: 64 -> 32", "model/embedding_dim: 300 -> 32",
    }
    # What the sampler would have drawn, as `suggest` names it: every Optuna parameter, nothing fixed.
    assert baseline.params["encoder/name"] == "textcnn" and baseline.params["regularizers/weight_decay/enabled"] is False
    assert "encoder/textcnn/filters" not in baseline.params


def test_the_default_baseline_follows_the_model_class_the_space_offers(tmp_path: Path) -> None:
    path = study_with(tmp_path, "", BASE.replace("choices: [textcnn, bilstm], params: {textcnn: {filters: 32, layers: 1}, ", "choices: [bilstm], params: {"))
    assert load_study_file(path).baseline.source == "baseline (task default: published bilstm)"


def test_a_partial_baseline_is_completed_from_the_published_one(tmp_path: Path) -> None:
    path = study_with(tmp_path, "baseline: {encoder: {name: bilstm}, loss: {name: focal, focal: {gamma: 2.0}}}")
    baseline = load_study_file(path).baseline
    strategy = Strategy.from_config(baseline.config)
    assert baseline.source == "baseline (the study file's, from published bilstm)"
    assert strategy.encoder[0] == "bilstm" and strategy.loss == ("focal", {"gamma": 2.0})
    assert strategy.optimizer == ("adam", {"lr": 0.003})  # from the published one, fitted


def test_a_flat_baseline_reads_as_the_nested_one(tmp_path: Path) -> None:
    nested = load_study_file(study_with(tmp_path, "baseline: {loss: {name: focal, focal: {gamma: 2.0}}}")).baseline
    flat = load_study_file(study_with(tmp_path, "baseline: {loss/name: focal, loss/focal/gamma: 2.0}")).baseline
    assert flat.params == nested.params and flat.config == nested.config


def test_baseline_none_and_a_space_with_nothing_to_search_have_no_baseline(tmp_path: Path) -> None:
    assert load_study_file(study_with(tmp_path, "baseline: none")).baseline is None
    config = load_study_file(study_with(tmp_path, ""))
    fixed_config = unflatten(suggest(optuna.create_study().ask(), config.space))
    fixed = parse_study({**config.raw, "space": Strategy.from_config(fixed_config).fixed_space()}, "fixed.yaml", "fixed")
    assert fixed.baseline is None
    # `search best --as-study` writes a retraining study without the original's baseline or sampler.
    retrain = fixed_study({**config.raw, "sampler": "cmaes", "enqueue": [{"loss": {"name": "focal"}}]}, fixed_config, "retrain")
    assert retrain["baseline"] == "none" and "sampler" not in retrain and "enqueue" not in retrain


def test_a_task_that_publishes_no_baseline_runs_none(tmp_path: Path) -> None:
    space = load_study_file(study_with(tmp_path, "")).space
    bare = type("BareTask", (), {"name": "bare", "baselines": {}})()
    assert read_baseline(None, bare, space, "bare.yaml") is None
    with pytest.raises(StudyFileError, match="task bare publishes no baseline; accepted: none"):
        read_baseline("textcnn", bare, space, "bare.yaml")


@pytest.mark.parametrize(
    ("fields", "field", "fragment"),
    [
        ("baseline: {optimizer: {name: adam, adam: {lr: 0.001}}}", "baseline.optimizer.adam.lr", "0.001 is outside this study's space; accepted: a number in [0.003, 0.01]"),
        ("baseline: {optimizer: {name: adam, adam: {lr: 1e-3}}}", "baseline.optimizer.adam.lr", "'1e-3' is text, not a number"),
        ("baseline: {encoder: {name: bilstm, bilstm: {hidden: 128}}}", "baseline.encoder.bilstm.hidden", "outside this study's space; this space fixes it at 32"),
        ("baseline: {loss: {focal: {gamma: 2.0}}}", "baseline.loss.focal.gamma", "name it: `loss: {name: focal}`"),
        ("baseline: {regularizers: {l1: {enabled: true}}}", "baseline.regularizers.l1.enabled", "off in every trial"),
        # A section where the published baseline has one value (found by the fuzz test).
        ("baseline: {optimizer: {name: {adam: adam}}}", "baseline.optimizer.name.adam", "config.optimizer.name takes one value ('adam'), not a section with 'adam' in it"),
        ("baseline: {dropout: 0.5}", "baseline.dropout", "unknown family; accepted: encoder, addons"),
        ("baseline: bert", "baseline", "'bert' is not a published baseline of task text_classification; accepted: textcnn, bilstm"),
        ("baseline: {from: bert}", "baseline.from", "accepted: textcnn, bilstm"),
        ("baseline: 3", "baseline", "accepted: none, a published baseline"),
        # Named, the published values must fit as they are; the message gives all of them and an override that fits.
        ("baseline: textcnn", "baseline", "`baseline: {from: textcnn, encoder: {textcnn: {filters: 32}}, model: {embedding_dim: 32}, optimizer: {adam: {lr: 0.003}}, train: {batch_size: 32}}`"),
        ("enqueue: [{loss: {name: hinge}}]", "enqueue[0].loss.name", "'hinge' is outside this study's space; accepted: one of cross_entropy, focal"),
        ("enqueue: {loss: focal}", "enqueue", "a list of (partial) configs"),
        ("warm_start: {study: other, top: 0}", "warm_start.top", "0 is not accepted; it must be an integer >= 1"),
        ("warm_start: {study: other, best: 3}", "warm_start.best", "unknown field"),
        ("warm_start: {top: 3}", "warm_start.study", "None is not a study name"),
        ("sampler: bayes", "sampler", "'bayes' is not a known sampler; accepted: tpe, random, gp, cmaes, qmc, nsga2"),
        ("sampler: nsga2", "sampler", "nsga2 is for multi-objective studies and this study has one objective; accepted for one objective: tpe, random, gp, cmaes, qmc"),
        ("sampler: qmc", "sampler", "qmc cannot serve this study's space: Optuna's QMCSampler builds its design over the parameters of the study's first trial"),
        ("sampler: {name: tpe, n_startup: 3}", "sampler.n_startup", "unknown option of the tpe sampler; accepted: n_startup_trials"),
        ("sampler: {name: gp, n_startup_trials: two}", "sampler.n_startup_trials", "'two' is not accepted; n_startup_trials must be an integer"),
        ("sampler: {name: qmc, qmc_type: lattice}", "sampler.qmc_type", "must be one of sobol, halton"),
        ("sampler: {n_startup_trials: 3}", "sampler.name", "missing; accepted: tpe"),
        ("startup: off", "startup", "False is not accepted (YAML reads off/no/false as false: write `plain`); accepted: around_baseline"),
        ("startup: grid", "startup", "'grid' is not accepted; accepted: around_baseline (the default"),
    ],
)
def test_bad_start_fields_are_refused_naming_file_field_value(tmp_path: Path, fields: str, field: str, fragment: str) -> None:
    path = study_with(tmp_path, fields)
    with pytest.raises(StudyFileError) as error:
        load_study_file(path)
    assert error.value.field == field, str(error.value)
    assert str(path) in str(error.value) and fragment in str(error.value), str(error.value)


def test_cmaes_is_refused_where_every_numeric_parameter_is_conditional(tmp_path: Path) -> None:
    only_branches = BASE.replace("always: [dropout]", "always: [dropout], params: {dropout: {p: 0.3}}")
    with pytest.raises(StudyFileError, match="CMA-ES models only numeric parameters that every trial has"):
        load_study_file(study_with(tmp_path, "sampler: cmaes", only_branches))
    assert load_study_file(study_with(tmp_path, "sampler: cmaes")).sampler.name == "cmaes"  # dropout's p is searched in every trial


@pytest.mark.parametrize("name", studies.names())
def test_shipped_studies_name_the_published_baseline_of_their_model_class(name: str) -> None:
    config = load_study_file(studies.path(name))
    assert "baseline" in config.raw, f"{name}.yaml names no baseline"
    baseline = config.baseline
    written = config.raw["baseline"]
    if isinstance(written, dict) and written.get("encoder", {}).get("name") == "transformer":
        # A pretrained encoder's baseline is the plain Hugging Face fine-tune (issue 22), not the research's.
        strategy = Strategy.from_config(baseline.config)
        assert strategy.optimizer == ("adamw", {"lr": 5e-5}) and strategy.schedule == ("linear", {"warmup_fraction": 0.0})
        assert strategy.loss[0] == "cross_entropy" and strategy.choice("finetune")[0] == "full"
        return
    assert baseline is not None and "published" in baseline.source and baseline.adapted == ()
    published = get_task(config.task).baselines
    model_class = baseline.source.rpartition("published ")[2].rstrip(")")
    # The research gives the architecture: the study's baseline keeps it where the study is not CPU-sized.
    if name not in ("demo", "squad_cpu"):
        wanted = Strategy.from_config(published[model_class])
        assert Strategy.from_config(baseline.config).choices["encoder"] == wanted.choices["encoder"]
        assert Strategy.from_config(baseline.config).embedding_dim == wanted.embedding_dim


def test_the_readme_study_example_reads_as_it_says() -> None:
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    example = text.split("## Study files")[1].split("```yaml")[1].split("```")[0]
    config = parse_study(yaml.safe_load(example), "README.md", "mine")
    assert config.sampler.name == "tpe" and config.warm_start.top == 4 and config.budget.time_budget_s == 7200
    assert Strategy.from_config(config.baseline.config).summary() == "bilstm / focal / dropout / adamw / cosine"
    assert config.enqueue[0].params == {"loss/name": "ghm", "regularizers/l2/enabled": True, "regularizers/l2/coefficient": 1e-5}


# --- what lands in the DB ------------------------------------------------------------------------


def test_the_first_run_enqueues_baseline_then_enqueue_once_and_resuming_adds_nothing(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'q.db'}"
    # `startup: plain`: no start-up variations in the slot the budget leaves after these three.
    path = study_with(tmp_path, "startup: plain\nenqueue: [{optimizer: {name: sgd}}, {loss: {name: focal, focal: {gamma: 2.0}}}]", toy_study_yaml(storage))
    config = load_study_file(path)
    study = prepare_study(open_storage(storage), config)
    lines: list[str] = []
    assert queue_first_trials(study, config, (), remaining=4, log=lines.append) == 3
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert [t.user_attrs.get(BASELINE_ATTR) for t in waiting] == [True, None, None]
    assert waiting[0].system_attrs["fixed_params"] == config.baseline.params
    assert waiting[0].user_attrs["baseline_adapted"] == list(config.baseline.adapted)
    assert [t.user_attrs.get(QUEUED_ATTR) for t in waiting[1:]] == ["enqueue[0]", "enqueue[1]"]
    assert [t.system_attrs["fixed_params"] for t in waiting[1:]] == [{"optimizer/name": "sgd"}, {"loss/name": "focal", "loss/focal/gamma": 2.0}]
    assert lines[0].startswith("queued: trial 0, baseline (task default: published textcnn); fitted to the space: ")
    # The same study again (a resumed run): nothing is enqueued twice.
    assert queue_first_trials(study, config, (), remaining=4, log=lines.append) == 0
    assert len(study.trials) == 3


def test_only_the_slots_the_budget_leaves_are_filled(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'q.db'}"
    config = load_study_file(study_with(tmp_path, "enqueue: [{optimizer: {name: sgd}}, {loss: {name: focal}}]", toy_study_yaml(storage)))
    study = prepare_study(open_storage(storage), config)
    lines: list[str] = []
    assert queue_first_trials(study, config, (), remaining=2, log=lines.append) == 2
    assert lines[-1] == "note: 1 queued configs wait for a larger budget (budget.trials 4)"
    assert queue_first_trials(study, config, (), remaining=4, log=lines.append) == 1  # a larger budget later


def test_a_requeued_baseline_stays_the_baseline(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'q.db'}"
    config = load_study_file(study_with(tmp_path, "startup: plain", toy_study_yaml(storage)))  # the baseline alone
    study = prepare_study(open_storage(storage), config)
    queue_first_trials(study, config, (), remaining=4, log=lambda _: None)
    running = study.ask()
    suggest(running, config.space)
    study._storage.set_trial_user_attr(running._trial_id, "driver", dead_driver())
    assert reconcile_orphans(study, lambda _: None) == 1
    failed, requeued = study.trials
    assert failed.state == TrialState.FAIL and requeued.state == TrialState.WAITING
    assert requeued.user_attrs[BASELINE_ATTR] is True and requeued.system_attrs["fixed_params"] == failed.params
    assert queue_first_trials(study, config, (), remaining=4, log=lambda _: None) == 0  # still the study's one baseline


# --- the start-up around the baseline ----------------------------------------------------------


def family_of(key: str) -> str:
    return key.split("/")[0]  # `optimizer/adam/lr` -> optimizer; the globals: train, model


def test_startup_variations_in_the_db_differ_from_the_baseline_in_one_family_each(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'q.db'}"
    config = load_study_file(study_with(tmp_path, "", toy_study_yaml(storage, trials=16)))
    study = prepare_study(open_storage(storage), config)
    lines: list[str] = []
    # 16 trials: the baseline, 16 // 4 variations; 16 // 4 + 16 // 8 - 4 = 2 random draws after them.
    assert queue_first_trials(study, config, (), remaining=16, log=lines.append) == 1 + 4
    baseline, *variations = study.get_trials(states=(TrialState.WAITING,))
    assert baseline.user_attrs[BASELINE_ATTR] is True
    base = baseline.system_attrs["fixed_params"]
    changed_families = []
    for trial in variations:
        assert trial.user_attrs[QUEUED_ATTR].startswith(VARIATION_SOURCE + ": ")
        fixed = trial.system_attrs["fixed_params"]
        differs = {key for key in base.keys() | fixed.keys() if base.get(key, "absent") != fixed.get(key, "absent")}
        assert differs and len({family_of(key) for key in differs}) == 1, differs
        changed_families.append(family_of(next(iter(differs))))
    # Space-filling: 4 variations, 4 different families (the toy space searches 6).
    assert len(set(changed_families)) == 4, changed_families
    assert [line.split(", ", 1)[1] for line in lines[1:]] == [t.user_attrs[QUEUED_ATTR] for t in variations]
    # Each is a point of the study's space: the trial Ray asks for gets exactly these values, each
    # inside the distribution the space gives it.
    for expected in (baseline, *variations):
        asked = study.ask()
        suggest(asked, config.space)
        frozen = study._storage.get_trial(asked._trial_id)
        assert frozen.params == expected.system_attrs["fixed_params"]
        for name, value in frozen.params.items():
            distribution = frozen.distributions[name]
            assert distribution._contains(distribution.to_internal_repr(value)), (name, value, distribution)


def test_resuming_or_enlarging_a_study_queues_no_variation_again(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'q.db'}"
    path = study_with(tmp_path, "", toy_study_yaml(storage, trials=8))
    config = load_study_file(path)
    study = prepare_study(open_storage(storage), config)
    assert queue_first_trials(study, config, (), remaining=8, log=lambda _: None) == 1 + 2
    assert queue_first_trials(study, config, (), remaining=8, log=lambda _: None) == 0
    larger = load_study_file(study_with(tmp_path, "", toy_study_yaml(storage, trials=32)))
    assert len(startup_plan(larger).variations) == 8
    assert queue_first_trials(study, larger, (), remaining=24, log=lambda _: None) == 0  # past its start-up
    sources = [t.user_attrs.get(QUEUED_ATTR, "") for t in study.trials]
    assert len(study.trials) == 3 and len(set(sources)) == 3


def test_variations_fill_only_the_slots_left_after_enqueue(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'q.db'}"
    config = load_study_file(study_with(tmp_path, "enqueue: [{optimizer: {name: sgd}}]", toy_study_yaml(storage, trials=8)))
    study = prepare_study(open_storage(storage), config)
    assert queue_first_trials(study, config, (), remaining=3, log=lambda _: None) == 3  # baseline, enqueue[0], one variation
    assert [t.user_attrs.get(QUEUED_ATTR, "baseline").split(":")[0] for t in study.trials] == ["baseline", "enqueue[0]", VARIATION_SOURCE]


@pytest.mark.parametrize(
    ("fields", "trials", "n_startup_trials"),
    [
        ("", 16, 1 + 16 // 4 + 16 // 8),  # derived: the baseline, 4 variations, 2 random
        ("", 64, 1 + 64 // 4 + 64 // 8),
        ("baseline: none", 16, 16 // 4 + 16 // 8),  # no baseline: no variations, all 6 random
        ("sampler: tpe", 16, 7),  # a sampler named without the option: still derived
        ("sampler: {name: tpe, n_startup_trials: 3}", 16, 3),  # the study file's option wins
        ("startup: plain", 16, 10),  # TPE's own default, as before
    ],
)
def test_tpe_starts_up_for_the_budget_unless_the_study_says_otherwise(tmp_path: Path, fields: str, trials: int, n_startup_trials: int) -> None:
    storage = f"sqlite:///{tmp_path / 'q.db'}"
    config = load_study_file(study_with(tmp_path, fields, toy_study_yaml(storage, trials=trials)))
    sampler = build_sampler(effective_sampler(config), config.seed, config.space)
    assert sampler._n_startup_trials == n_startup_trials
    study = prepare_study(open_storage(storage), config)
    from search.start import record_sampler

    record_sampler(study, config, lambda _: None)
    recorded = study.user_attrs["sampler"]
    assert recorded["name"] == "tpe" and recorded.get("n_startup_trials", 10) == n_startup_trials


def test_other_samplers_keep_their_options_and_still_start_around_the_baseline(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'q.db'}"
    config = load_study_file(study_with(tmp_path, "sampler: {name: gp, n_startup_trials: 2}", toy_study_yaml(storage, trials=8)))
    assert effective_sampler(config).describe() == {"name": "gp", "n_startup_trials": 2}
    assert len(startup_plan(config).variations) == 2


def test_the_readme_startup_table_is_what_the_plan_gives() -> None:
    """The README's table of what 8, 16, 32 and 64 trials buy, for a study that omits its space."""
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = text.split("what a budget buys")[1].split("\n\n")[1]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in table.splitlines()[2:]]
    raw = yaml.safe_load(studies.path("demo").read_text())
    raw.pop("space"), raw.pop("baseline")
    assert [row[0] for row in rows] == ["8", "16", "32", "64"]
    for row in rows:
        raw["budget"]["trials"] = int(row[0])
        config = parse_study(raw, "demo.yaml", "demo")
        plan = startup_plan(config)
        assert [int(cell) for cell in row[1:6]] == [
            1, len(plan.variations), plan.random, int(row[0]) - 1 - len(plan.variations) - plan.random, plan.n_startup_trials]


class _Trial:
    def __init__(self, trial_id: str) -> None:
        self.trial_id = trial_id


def test_asha_never_stops_the_baseline_but_stops_the_others() -> None:
    scheduler = FullBudgetASHA(runs_full_budget=lambda trial_id: trial_id == "baseline", time_attr="epoch",
                               metric="accuracy", mode="max", max_t=3, grace_period=1, reduction_factor=2)
    trials = {name: _Trial(name) for name in ("good", "better", "baseline", "weak")}
    for trial in trials.values():
        scheduler.on_trial_add(None, trial)
    decisions = {name: scheduler.on_trial_result(None, trial, {"epoch": 1, "accuracy": {"good": 0.9, "better": 0.95}.get(name, 0.5)})
                 for name, trial in trials.items()}
    assert decisions == {"good": "CONTINUE", "better": "CONTINUE", "baseline": "CONTINUE", "weak": "STOP"}
    assert scheduler.on_trial_result(None, trials["baseline"], {"epoch": 3, "accuracy": 0.5}) == "STOP"  # the end of its budget


# --- warm starts ---------------------------------------------------------------------------------


def finished_study(storage: str, path: Path, values: list[float], name: str = "earlier") -> optuna.Study:
    """A study as a finished search leaves it: COMPLETE trials with their configs."""
    config = load_study_file(path)
    study = prepare_study(open_storage(storage), config)
    sampler_study = optuna.create_study(study_name=name, storage=storage, load_if_exists=True)
    for value in values:
        trial = sampler_study.ask()
        trial.set_user_attr("config", unflatten(suggest(trial, config.space)))
        sampler_study.tell(trial, value)
    return study


def test_warm_start_queues_the_best_trials_of_a_compatible_study(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'w.db'}"
    finished_study(storage, study_with(tmp_path, "", toy_study_yaml(storage, name="earlier")), [0.7, 0.9, 0.8])
    config = load_study_file(study_with(tmp_path, "startup: plain\nwarm_start: {study: earlier, top: 2}", toy_study_yaml(storage, name="later")))
    earlier = optuna.load_study(study_name="earlier", storage=storage)
    queued = load_warm_start(config)
    assert [q.source for q in queued] == ["warm_start: study 'earlier' trial 1 (accuracy 0.9000)", "warm_start: study 'earlier' trial 2 (accuracy 0.8000)"]
    assert [q.params for q in queued] == [earlier.trials[1].params, earlier.trials[2].params]
    later = prepare_study(open_storage(storage), config)
    assert queue_first_trials(later, config, queued, remaining=4, log=lambda _: None) == 3
    assert [t.user_attrs.get(QUEUED_ATTR, "baseline") for t in later.trials] == ["baseline", queued[0].source, queued[1].source]


@pytest.mark.parametrize(
    ("later", "fragment"),
    [
        ("warm_start: {study: nowhere}", "no study 'nowhere' in"),
        ("warm_start: {study: tagging}", "'tagging' is a ner study; a warm start needs a text_classification study"),
        ("warm_start: {study: later}", "'later' is this study itself"),
        ("warm_start: {study: earlier, storage: 'sqlite:///missing.db'}", "no database at 'missing.db'"),
    ],
)
def test_warm_start_from_an_incompatible_study_is_refused(tmp_path: Path, later: str, fragment: str) -> None:
    storage = f"sqlite:///{tmp_path / 'w.db'}"
    finished_study(storage, study_with(tmp_path, "", toy_study_yaml(storage, name="earlier")), [0.7])
    ner = tmp_path / "ner.yaml"
    ner.write_text(ner_study_yaml(storage, name="tagging"))
    prepare_study(open_storage(storage), load_study_file(ner))
    config = load_study_file(study_with(tmp_path, later, toy_study_yaml(storage, name="later")))
    with pytest.raises(StudyFileError, match="warm_start") as error:
        load_warm_start(config)
    assert fragment in str(error.value)


def test_warm_start_refuses_a_trial_outside_this_space(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'w.db'}"
    toy = toy_study_yaml(storage, name="earlier")
    slow_adam = "optimizer: {choices: [adam], params: {adam: {lr: [0.0001, 0.0002]}}}"
    finished_study(storage, study_with(tmp_path, "", toy.replace(toy.split("\n  optimizer: ")[1].split("\n")[0], slow_adam.split(": ", 1)[1])), [0.7])
    config = load_study_file(study_with(tmp_path, "warm_start: {study: earlier, top: 1}", toy_study_yaml(storage, name="later")))
    with pytest.raises(StudyFileError, match=r"trial 0 of 'earlier' is outside this study's space: optimizer/adam/lr .* accepted: a number in \[0.003, 0.01\]"):
        load_warm_start(config)


# --- the comparison with the baseline ------------------------------------------------------------


def test_best_and_report_print_the_gain_over_the_baseline(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    storage = f"sqlite:///{tmp_path / 'c.db'}"
    config = load_study_file(study_with(tmp_path, "", toy_study_yaml(storage)))
    study = prepare_study(open_storage(storage), config)
    queue_first_trials(study, config, (), remaining=3, log=lambda _: None)
    for value in (0.80, 0.85, 0.75):
        trial = study.ask()
        trial.set_user_attr("config", unflatten(suggest(trial, config.space)))
        study.tell(trial, value)
    study.set_user_attr("best_trial_test", {"trial": 1, "accuracy": 0.84})
    study.set_user_attr("baseline_test", {"trial": 0, "accuracy": 0.79})
    comparison = compare_with_baseline(study)
    assert comparison.lines() == ["baseline (trial 0): dev accuracy baseline 0.8000, best 0.8500 (+0.0500); test baseline 0.7900, best 0.8400 (+0.0500), best is trial 1"]

    assert main(["best", "toy", "--storage", storage]) == 0
    assert comparison.lines()[0] in capsys.readouterr().out
    assert main(["report", "toy", "--storage", storage, "--table"]) == 0
    assert comparison.lines()[0] in capsys.readouterr().out

    # A search that did not beat its baseline says so.
    trial = study.ask()
    study.tell(trial, state=TrialState.PRUNED)
    study.set_user_attr("best_trial_test", {})
    flat = optuna.create_study(direction="maximize")
    flat.set_user_attr("metric", "accuracy")
    for value, attrs in ((0.9, {BASELINE_ATTR: True}), (0.8, {})):
        flat.enqueue_trial({}, user_attrs=attrs)
        flat.tell(flat.ask(), value)
    assert compare_with_baseline(flat).lines() == [
        "baseline (trial 0): dev accuracy baseline 0.9000, best 0.9000 (+0.0000)", "the search did not beat the baseline: trial 0 is the best"]


def test_flattened_config_of_a_baseline_is_what_the_trial_gets(tmp_path: Path) -> None:
    config = load_study_file(study_with(tmp_path, ""))
    study = optuna.create_study()
    study.enqueue_trial(config.baseline.params)
    assert unflatten(suggest(study.ask(), config.space)) == config.baseline.config
    assert set(config.baseline.params) <= set(flatten(config.baseline.config))
