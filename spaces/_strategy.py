"""One trial's strategy, and the only code that knows how a trial's config is laid out.

A strategy travels in two forms. Flat, as Optuna names the parameters (and `search train --set`
takes them), with branch-specific names that unflatten on "/" without collisions:

    encoder/name = "bilstm"                 encoder/bilstm/hidden = 128
    addons/mhsa/enabled = True              addons/mhsa/heads = 4
    loss/name = "focal"                     loss/focal/gamma = 2.0
    regularizers/dropout/enabled = True     regularizers/dropout/p = 0.5
    optimizer/name = "adamw"                optimizer/adamw/lr = 1e-3
    schedule/name = "cosine"                schedule/cosine/warmup_fraction = 0.1
    train/batch_size = 64                   model/embedding_dim = 300

and nested, as Ray hands it to a trial and the trial's `config` user attribute records it: a
"choice" family is `{"name": component, component: {params}}` (no params entry when the component
has none), a "toggle" family `{component: {"enabled": bool, params...}}`, and the globals sit
under "train" (batch_size) and "model" (embedding_dim).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from spaces._base import Offer, Registry, SpaceError

SEPARATOR = "/"
_NAME = "name"  # a choice family's chosen component
_ENABLED = "enabled"  # a toggle family's component switched on or off

# Parameters that belong to no family: name (as the study file's `space:` says it) -> config group.
GLOBAL_GROUPS = {"batch_size": "train", "embedding_dim": "model"}
_GROUPS = tuple(dict.fromkeys(GLOBAL_GROUPS.values()))


def choice_key(family: str) -> str:
    """`loss/name`: the flat name of a choice family's component."""
    return SEPARATOR.join((family, _NAME))


def enabled_key(family: str, component: str) -> str:
    """`addons/mhsa/enabled`: the flat name of a toggle family's switch."""
    return SEPARATOR.join((family, component, _ENABLED))


def param_key(family: str, component: str, param: str) -> str:
    """`loss/focal/gamma`: the flat name of a component's hyperparameter."""
    return SEPARATOR.join((family, component, param))


def global_key(name: str) -> str:
    """`train/batch_size`: the flat name of a global (`batch_size`, `embedding_dim`)."""
    return SEPARATOR.join((GLOBAL_GROUPS[name], name))


def is_flat_key(key: str) -> bool:
    """Whether `key` can name a config value: no surrounding spaces, no empty part."""
    return bool(key) and key == key.strip() and all(key.split(SEPARATOR))


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"loss": {"focal": {"gamma": 2}}}` -> `{"loss/focal/gamma": 2}`, in the config's order.

    Any mapping, not only a valid config: what is not understood is still named (an empty
    mapping stays a value), so that a check can point at it.
    """
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, name + SEPARATOR))
        else:
            flat[name] = value
    return flat


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """`{"loss/focal/gamma": 2}` -> `{"loss": {"focal": {"gamma": 2}}}` (as Ray Tune does)."""
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        node = nested
        *parents, leaf = key.split(SEPARATOR)
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


def with_overrides(config: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """`config` with the values `overrides` names flat (`optimizer/adam/lr`) replaced or added.

    Choosing another component (`optimizer/name`) drops the parameters the config had for the old
    one: they no longer apply, and the new one's must be given. The config need not be valid.
    """
    flat = flatten(config)
    for key, value in overrides.items():
        family = key.partition(SEPARATOR)[0]
        if key == choice_key(family) and flat.get(key) != value:
            flat = {k: v for k, v in flat.items() if not k.startswith(family + SEPARATOR)}
    flat.update(overrides)
    _refuse_shape_clashes(overrides, flat)
    return unflatten(flat)


def _refuse_shape_clashes(overrides: Mapping[str, Any], flat: Mapping[str, Any]) -> None:
    """A ConfigError naming the override that makes one name both a value and a section.

    E.g. `optimizer/name/adamw` given where the config has `optimizer/name: adamw`: unflattened,
    one of the two would overwrite the other or fail deep inside. The deeper name is blamed first.
    """
    for key in overrides:
        parts = key.split(SEPARATOR)
        for end in range(1, len(parts)):
            parent = SEPARATOR.join(parts[:end])
            if parent in flat:
                raise ConfigError(key, f"config.{parent.replace(SEPARATOR, '.')} takes one value ({flat[parent]!r}), "
                                       f"not a section with {'.'.join(parts[end:])!r} in it")
    for key in overrides:
        below = [k.rpartition(SEPARATOR)[2] for k in flat if k.startswith(key + SEPARATOR)]
        if below:
            raise ConfigError(key, f"is a section ({', '.join(below)}), not one value ({flat[key]!r})")


class ConfigError(SpaceError):
    """A nested config that `suggest` could not have produced.

    `key` is the flat name at fault (`loss/focal/gamma`); `where` is the same field as a file
    writes it (`config.loss.focal.gamma`).
    """

    def __init__(self, key: str, message: str) -> None:
        super().__init__("config." + key.replace(SEPARATOR, "."), message)
        self.key = key


# Opt-in training families, named after the schedule in the one-line summary when they are on.
_TRAINING_FAMILIES = ("initialization", "averaging", "adversarial", "augmentation", "consistency")
_OFF = ("none", "default")

# Families read as "model" parts in a strategy's one-line summary, in this order.
_MODEL_FAMILIES = ("char_encoder", "encoder", "finetune", "pooling", "addons", "head")


@dataclass(frozen=True)
class Strategy:
    """One sampled strategy, read from the nested config a trial receives (any task's families).

    `switches` and `sections` keep what the config says beyond the typed fields (components
    listed as off, the order of its entries), so that it is written back as it was read.
    """

    choices: dict[str, tuple[str, dict[str, Any]]]  # family -> (component, hyperparameters)
    toggles: dict[str, dict[str, dict[str, Any]]]  # family -> {enabled component: hyperparameters}
    batch_size: int
    embedding_dim: int
    switches: dict[str, dict[str, bool]] = field(default_factory=dict)  # toggle family -> {listed component: on}
    sections: tuple[str, ...] = ()  # the config's entries in order: families, "train", "model"

    def __post_init__(self) -> None:
        # A Strategy built by hand lists only its enabled components, its families in field order.
        if not self.switches:
            object.__setattr__(self, "switches", {f: dict.fromkeys(on, True) for f, on in self.toggles.items()})
        if not self.sections:
            object.__setattr__(self, "sections", (*self.choices, *self.toggles, *_GROUPS))

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Strategy:
        """From the nested config a trial receives, globals as integers."""
        strategy = cls._read(config)
        return replace(strategy, batch_size=int(strategy.batch_size), embedding_dim=int(strategy.embedding_dim))

    @classmethod
    def from_flat(cls, flat: Mapping[str, Any]) -> Strategy:
        """From the flat form `suggest` returns and Optuna records."""
        return cls.from_config(unflatten(flat))

    @classmethod
    def check(
        cls, config: Mapping[str, Any], registries: Mapping[str, Registry], *, task: str | None = None,
        offers: Mapping[str, Sequence[Offer]] | None = None,
    ) -> None:
        """Refuses, with a `ConfigError`, a config from outside the search (`search train`) that
        the search could not have produced: an unknown family, component or parameter, a value out
        of its hard limits, a missing or a superfluous value. The config, fixed, must resample to
        itself, as when `search best --as-study` retrains a trial. `task` names the registries in errors;
        `offers` (the task's) refuses a component the task cannot train.
        """
        from spaces._space import build_space, suggest  # _space imports this module for the flat names

        def at(name: str) -> str:
            # A family at fault is pointed at by the value that names its component.
            registry = registries.get(name)
            return choice_key(name) if registry is not None and registry.kind == "choice" else name

        accepted = (*registries, *_GROUPS)
        for section, entry in config.items():
            if section not in accepted:
                owner = f" for task {task}" if task else ""
                raise ConfigError(at(str(section)), f"unknown family{owner}; accepted: {', '.join(accepted)}")
            resolved_shape = isinstance(entry, Mapping) and (
                section in _GROUPS or all(isinstance(v, Mapping) for k, v in entry.items() if k != _NAME))
            if not resolved_shape:
                raise ConfigError(at(str(section)), f"{entry!r} is not a resolved {section} entry, as `search export` writes it")
        for name, group in GLOBAL_GROUPS.items():
            if name not in config.get(group, {}):
                raise ConfigError(global_key(name), "missing; every config fixes it")
        try:
            space = build_space(cls._read(config).fixed_space(), registries, where="config", offers=offers, task=task or "")
            resampled = suggest(_FixedOnly(), space)
        except SpaceError as error:
            raise ConfigError(at(_flat_key_of_space_field(error.where)), error.message) from None
        except _FixedOnly.Missing as missing:
            raise ConfigError(at(str(missing)), "missing; the component this config uses needs it") from None
        extra = sorted(set(flatten(config)) - set(resampled))
        if extra:
            raise ConfigError(at(extra[0]), "not used by this config (a parameter of a component that is not chosen, or off)")

    @classmethod
    def _read(cls, config: Mapping[str, Any]) -> Strategy:
        """The config as it is; globals not yet converted (a check must see them as written)."""
        choices: dict[str, tuple[str, dict[str, Any]]] = {}
        toggles: dict[str, dict[str, dict[str, Any]]] = {}
        switches: dict[str, dict[str, bool]] = {}
        sections = []
        for section, entry in config.items():
            if section not in _GROUPS and not isinstance(entry, Mapping):
                continue
            sections.append(section)
            if section in _GROUPS:
                continue
            if _NAME in entry:
                name = entry[_NAME]
                choices[section] = (name, dict(entry.get(name, {})))
            else:
                listed = {name: params for name, params in entry.items() if isinstance(params, Mapping) and _ENABLED in params}
                switches[section] = {name: bool(params[_ENABLED]) for name, params in listed.items()}
                toggles[section] = {
                    name: {k: v for k, v in params.items() if k != _ENABLED} for name, params in listed.items() if params[_ENABLED]
                }
        values = {name: config[group][name] for name, group in GLOBAL_GROUPS.items()}
        return cls(choices, toggles, values["batch_size"], values["embedding_dim"], switches, tuple(sections))

    def to_config(self) -> dict[str, Any]:
        """The nested config, entries in the order they were read."""
        config: dict[str, Any] = {}
        for section in self.sections:
            if section in _GROUPS:
                config[section] = {name: value for name, value in self._globals().items() if GLOBAL_GROUPS[name] == section}
            elif section in self.choices:
                name, params = self.choices[section]
                config[section] = {_NAME: name, name: dict(params)} if params else {_NAME: name}
            else:
                enabled = self.toggles.get(section, {})
                config[section] = {
                    name: {_ENABLED: on, **(enabled[name] if on else {})} for name, on in self.switches.get(section, {}).items()
                }
        return config

    def to_flat(self) -> dict[str, Any]:
        """The flat form, as `suggest` returns it."""
        return flatten(self.to_config())

    def fixed_space(self) -> dict[str, Any]:
        """A study's `space:` section that fixes every value of this strategy (one trial to retrain)."""
        space: dict[str, Any] = {}
        for section in self.sections:
            if section in _GROUPS:
                space.update({name: value for name, value in self._globals().items() if GLOBAL_GROUPS[name] == section})
            elif section in self.choices:
                name, params = self.choices[section]
                space[section] = {"choices": [name], "params": {name: dict(params)}} if params else name
            else:
                enabled = self.toggles.get(section, {})
                space[section] = {"search": [], "always": list(enabled), "params": {n: dict(p) for n, p in enabled.items() if p}}
        return space

    def dimensions(self) -> dict[str, str]:
        """dimension -> choice, as the report's strategy table counts them: a choice family's
        component (`loss`: `focal`), each listed toggle on or off (`addons/mhsa`: `on`), the globals."""
        dims = {family: str(name) for family, (name, _) in self.choices.items()}
        for family, listed in self.switches.items():
            dims.update({SEPARATOR.join((family, name)): "on" if on else "off" for name, on in listed.items()})
        dims.update({name: str(value) for name, value in self._globals().items()})
        return dims

    def _globals(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in GLOBAL_GROUPS}  # the fields are named as the globals

    def choice(self, family: str) -> tuple[str, dict[str, Any]]:
        return self.choices[family]

    @property
    def encoder(self) -> tuple[str, dict[str, Any]]:
        return self.choices["encoder"]

    @property
    def loss(self) -> tuple[str, dict[str, Any]]:
        return self.choices["loss"]

    @property
    def optimizer(self) -> tuple[str, dict[str, Any]]:
        return self.choices["optimizer"]

    @property
    def schedule(self) -> tuple[str, dict[str, Any]]:
        return self.choices["schedule"]

    @property
    def addons(self) -> dict[str, dict[str, Any]]:
        return self.toggles.get("addons", {})

    @property
    def regularizers(self) -> dict[str, dict[str, Any]]:
        return self.toggles.get("regularizers", {})

    def summary(self) -> str:
        """A one-line name such as `char-cnn+bilstm+mhsa+crf / focal / dropout / adamw / cosine` (`focal+infonce` with a loss term)."""
        parts = []
        for family in _MODEL_FAMILIES:
            if family in self.choices:
                name = self.choices[family][0]
                if name != "none":
                    parts.append(f"char-{name}" if family == "char_encoder" else name)
            parts += list(self.toggles.get(family, {}))
        regs = "+".join(self.regularizers) or "no-reg"
        loss = "+".join([self.loss[0], *self.toggles.get("loss_terms", {})])
        line = f"{'+'.join(parts)} / {loss} / {regs} / {self.optimizer[0]} / {self.schedule[0]}"
        extras = [name for family in _TRAINING_FAMILIES if family in self.choices for name in [self.choices[family][0]] if name not in _OFF]
        extras += [name for family in _TRAINING_FAMILIES for name in self.toggles.get(family, {})]
        return f"{line} / {'+'.join(extras)}" if extras else line

    def regularizer(self, name: str, key: str, off: Any = 0.0) -> Any:
        """A regularizer's hyperparameter, or `off` when the regularizer is not used."""
        entry = self.regularizers.get(name)
        return off if entry is None else entry[key]


def _flat_key_of_space_field(where: str) -> str:
    """The flat name behind a field of the `space:` section `fixed_space` writes (`config.loss.params.focal.gamma`)."""
    path = where.removeprefix("config").strip(".")
    for part in (".params", ".choices", ".always"):
        path = path.replace(part, "")
    key = path.replace(".", SEPARATOR)
    return global_key(key) if key in GLOBAL_GROUPS else key


class _FixedOnly:
    """A stand-in trial for resampling a fixed space: any value it would have to sample is missing."""

    class Missing(Exception):
        pass

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        if len(choices) == 1:  # a fixed choice family still asks for its one candidate
            return choices[0]
        raise self.Missing(name)

    def suggest_float(self, name: str, *args: Any, **kwargs: Any) -> float:
        raise self.Missing(name)

    def suggest_int(self, name: str, *args: Any, **kwargs: Any) -> int:
        raise self.Missing(name)
