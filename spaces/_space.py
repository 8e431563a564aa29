"""The study's space, and the define-by-run `suggest` that samples one whole strategy from it.

Parameter names are branch-specific so that no categorical changes its choices between branches;
`spaces._strategy` names them (`loss/name`, `loss/focal/gamma`, `addons/mhsa/enabled`, ...) and
is the only code that knows how they nest into a trial's config.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from spaces._base import Categorical, Offer, Param, Registry, SpaceError, is_positive_int
from spaces._support import restrict_to_supported
from spaces._strategy import Strategy, choice_key, enabled_key, global_key, param_key, unflatten

# Re-exported: the training loops import Strategy from here, and unflatten was defined here.
__all__ = ["FamilySpace", "GLOBAL_PARAMS", "Space", "Strategy", "build_space", "categorical_choices", "suggest", "unflatten"]


@dataclass(frozen=True)
class FamilySpace:
    """What a study searches in one family.

    For a "choice" family `candidates` are the components the sampler picks one from; for a
    "toggle" family they are the components it switches on or off, and `always` are on in
    every trial. `params` holds each component's effective ranges after the study's overrides.
    """

    registry: Registry
    candidates: tuple[str, ...]
    always: tuple[str, ...] = ()
    params: Mapping[str, Mapping[str, Param]] = field(default_factory=dict)

    @property
    def family(self) -> str:
        return self.registry.family


# Parameters that belong to no family: name in the study file -> default.
GLOBAL_PARAMS: dict[str, Param] = {
    "batch_size": Categorical((32, 64, 128), allowed=is_positive_int, doc="a batch size (positive integer)"),
    "embedding_dim": Categorical((128, 300), allowed=is_positive_int, doc="an embedding size (positive integer)"),
}


@dataclass(frozen=True)
class Space:
    families: Mapping[str, FamilySpace]
    globals: Mapping[str, Param]  # flat name -> param


def build_space(
    spec: Mapping[str, Any] | None, registries: Mapping[str, Registry], where: str = "space",
    offers: Mapping[str, Sequence[Offer]] | None = None, task: str = "",
) -> Space:
    """Reads a study's `space:` section against the task's registries.

    A family may be omitted (every component searched with default ranges; an `opt_in` family is
    then off), or given as:
      - a name (fixed), or a list of names (searched among them);
      - a mapping `{choices: [...], params: {component: {param: override}}}`; for a toggle family
        `{search: [...], always: [...], params: ...}` (components in neither are off).
    An override is a number or a single value (fixed), `[low, high]`, `{low, high, log}`, or a
    list of choices for a categorical.

    `offers` (family -> what the task gives its components) leaves out, or refuses where the
    study names them, components that cannot work with `task` (see `spaces._support`).
    """
    if spec is None:
        spec = {}
    if not isinstance(spec, Mapping):
        raise SpaceError(where, f"expected a mapping of families, got {spec!r}")
    spec = dict(spec)
    known = list(registries) + list(GLOBAL_PARAMS)
    unknown = [k for k in spec if k not in known]
    if unknown:
        raise SpaceError(f"{where}.{unknown[0]}", f"unknown space entry; accepted: {', '.join(known)}")

    families = {
        family: _family_space(reg, spec.get(family), f"{where}.{family}")
        for family, reg in registries.items()
        if family in spec or not reg.opt_in
    }
    if offers:
        families = restrict_to_supported(families, spec, offers, task, where)
    families = _keep_reachable(families, spec, where)
    globals_ = {}
    for key, default in GLOBAL_PARAMS.items():
        globals_[global_key(key)] = default.override(spec[key], f"{where}.{key}") if key in spec else default
    return Space(families, globals_)


def _keep_reachable(families: Mapping[str, FamilySpace], spec: Mapping[str, Any], where: str) -> dict[str, FamilySpace]:
    """`families` without those whose required component (`Registry.requires`) the space cannot
    choose; a study that names such a family is refused, since none of its trials would use it."""
    kept: dict[str, FamilySpace] = {}
    for family, fs in families.items():
        required = fs.registry.requires
        if required is not None:
            owner = kept.get(required[0])
            if owner is None or required[1] not in (*owner.candidates, *owner.always):
                if family in spec:
                    raise SpaceError(
                        f"{where}.{family}",
                        f"applies only with {required[0]} {required[1]!r}, which this study does not search; "
                        f"add {required[1]!r} to {required[0]} or leave {family} out",
                    )
                continue
        kept[family] = fs
    return kept


def _default_names(reg: Registry) -> list[str]:
    """What an omitted family searches: every component but those a study must name (`opt_in`)."""
    return [name for name in reg.names() if not reg[name].opt_in]


def _family_space(reg: Registry, value: Any, where: str) -> FamilySpace:
    accepted = ", ".join(reg.names())
    params_spec: Any = {}
    always: list[str] = []
    if value is None:
        candidates = _default_names(reg)
    elif isinstance(value, str):
        candidates = [value]
    elif isinstance(value, (list, tuple)):
        candidates = list(value)
    elif isinstance(value, Mapping):
        allowed_keys = {"choices", "params"} if reg.kind == "choice" else {"search", "always", "params"}
        extra = set(value) - allowed_keys
        if extra:
            raise SpaceError(f"{where}.{sorted(map(str, extra))[0]}", f"unknown key; accepted: {', '.join(sorted(allowed_keys))}")
        list_key = "choices" if reg.kind == "choice" else "search"
        candidates = value.get(list_key, _default_names(reg) if reg.kind == "choice" else [])
        if isinstance(candidates, str):
            candidates = [candidates]
        always = value.get("always", []) or []
        if isinstance(always, str):
            always = [always]
        params_spec = value.get("params", {}) or {}
        where_list = f"{where}.{list_key}"
    else:
        raise SpaceError(where, f"{value!r} is not a component name, a list of names or a mapping; accepted names: {accepted}")

    where_list = where if not isinstance(value, Mapping) else where_list
    for listed, where_listed in ((candidates, where_list), (always, f"{where}.always")):
        if not isinstance(listed, (list, tuple)):
            raise SpaceError(where_listed, f"{listed!r} is not a component name or a list of names; accepted names: {accepted}")
    for name in [*candidates, *always]:
        if not isinstance(name, str) or name not in reg.components:
            raise SpaceError(where_list, f"{name!r} is not a known {reg.family}; accepted: {accepted}")
    if len(set(candidates)) != len(candidates):
        raise SpaceError(where_list, f"a component is listed twice: {candidates}")
    if set(candidates) & set(always):
        raise SpaceError(where, f"{sorted(set(candidates) & set(always))} listed in both search and always")
    if reg.kind == "choice" and not candidates:
        raise SpaceError(where_list, f"no {reg.family} to choose from; accepted: {accepted}")

    if not isinstance(params_spec, Mapping):
        raise SpaceError(f"{where}.params", f"expected a mapping of component -> {{param: value}}, got {params_spec!r}")
    active = [*candidates, *always]
    params: dict[str, Mapping[str, Param]] = {}
    for name in active:
        params[name] = dict(reg[name].params)
    for name, overrides in params_spec.items():
        where_c = f"{where}.params.{name}"
        if name not in reg.components:
            raise SpaceError(where_c, f"{name!r} is not a known {reg.family}; accepted: {accepted}")
        if name not in active:
            raise SpaceError(where_c, f"parameters given for {name!r}, which this study does not use; it uses: {', '.join(active)}")
        if not isinstance(overrides, Mapping):
            raise SpaceError(where_c, f"expected a mapping of parameter -> value or range, got {overrides!r}")
        declared = reg[name].params
        effective = dict(declared)
        for pname, override in overrides.items():
            if pname not in declared:
                options = ", ".join(declared) or "none (it has no hyperparameters)"
                raise SpaceError(f"{where_c}.{pname}", f"{name} has no parameter {pname!r}; its parameters: {options}")
            effective[pname] = declared[pname].override(override, f"{where_c}.{pname}")
        params[name] = effective
    return FamilySpace(reg, tuple(candidates), tuple(always), params)


def suggest(trial: Any, space: Space) -> dict[str, Any]:
    """Samples one whole strategy; returns it flat, fixed values included.

    Works with a plain `optuna.Trial` (`optuna.create_study().ask()`) and with the trial that
    Ray's OptunaSearch passes to a define-by-run space. Only samples; never computes.
    """
    config: dict[str, Any] = {}
    for fam in space.families.values():
        family = fam.family
        if not _requirement_chosen(fam.registry, config):
            continue  # e.g. fine-tuning settings in a trial that chose a from-scratch encoder
        if fam.registry.kind == "choice":
            # A single candidate is still asked for, so every trial's params name its choice.
            chosen = trial.suggest_categorical(choice_key(family), list(fam.candidates))
            config[choice_key(family)] = chosen
            _suggest_params(trial, config, family, chosen, fam.params[chosen])
        else:
            for name in fam.registry.names():
                if name in fam.always:
                    on = True
                elif name in fam.candidates:
                    on = trial.suggest_categorical(enabled_key(family, name), [False, True])
                else:
                    on = False
                config[enabled_key(family, name)] = on
                if on:
                    _suggest_params(trial, config, family, name, fam.params[name])
    for flat_name, param in space.globals.items():
        config[flat_name] = param.suggest(trial, flat_name)
    return config


def categorical_choices(space: Space) -> dict[str, tuple[Any, ...]]:
    """Every categorical `suggest` may ask for, with its choices. Optuna refuses a categorical
    whose choices differ from those already recorded in the study under the same name."""
    choices: dict[str, tuple[Any, ...]] = {}
    for fam in space.families.values():
        if fam.registry.kind == "choice":
            choices[choice_key(fam.family)] = tuple(fam.candidates)
        for name in fam.candidates:
            if fam.registry.kind == "toggle":
                choices[enabled_key(fam.family, name)] = (False, True)
        for name in (*fam.candidates, *fam.always):
            for pname, param in fam.params[name].items():
                if isinstance(param, Categorical):
                    choices[param_key(fam.family, name, pname)] = tuple(param.choices)
    for flat_name, param in space.globals.items():
        if isinstance(param, Categorical):
            choices[flat_name] = tuple(param.choices)
    return choices


def _requirement_chosen(reg: Registry, config: Mapping[str, Any]) -> bool:
    """Whether the strategy sampled so far chose the component `reg` requires (if any)."""
    if reg.requires is None:
        return True
    family, component = reg.requires
    return config.get(choice_key(family)) == component or config.get(enabled_key(family, component)) is True


def _suggest_params(trial: Any, config: dict[str, Any], family: str, component: str, params: Mapping[str, Param]) -> None:
    for pname, param in params.items():
        key = param_key(family, component, pname)
        config[key] = param.suggest(trial, key)
