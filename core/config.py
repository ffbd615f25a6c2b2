"""RerankerConfig: everything needed to build a reranker, as a JSON-safe, secret-free value."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from rerankit._optional import require
from rerankit.errors import ConfigurationError
from rerankit.options import Option, OptionSchema, parse_value
from rerankit.secrets import Secret

DTYPES = ("float32", "float16", "bfloat16")

# The typed fields of RerankerConfig, parsed like backend options (text from a command line too).
FIELDS: OptionSchema = {
    "backend": Option("str", None, "backend name; inferred from the model when unset"),
    "device": Option("str", None, "cpu, cuda, cuda:1, mps; the best available when unset"),
    "dtype": Option(
        "enum",
        None,
        "weights' dtype; on CUDA fp16 (bf16 for LLM and T5 rerankers), fp32 elsewhere",
        choices=DTYPES,
    ),
    "batch_size": Option("int", 32, "pairs per batch at most", minimum=1),
    "max_length": Option("int", 512, "tokens per pair at most (query + passage)", minimum=1),
    "top_k": Option("int", None, "documents kept, best first", minimum=1),
    "score_threshold": Option("float", None, "documents scoring below it are dropped"),
    "normalize": Option("bool", False, "probabilities in [0, 1] instead of raw scores"),
}

# The settings every framework adapter accepts as its own arguments, besides ``config``.
ADAPTER_SETTINGS = (
    "model",
    "backend",
    "device",
    "batch_size",
    "max_length",
    "normalize",
    "options",
)


def is_positive_int(value: object) -> bool:
    """An ``int`` (not a ``bool``) above zero."""
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def is_finite_number(value: object) -> bool:
    """An ``int`` or ``float`` (not a ``bool``) that is neither NaN nor infinite."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class RerankerConfig:
    """How to build a :class:`~rerankit.Reranker`; one config drives the core and every adapter.

    >>> cfg = RerankerConfig(model="BAAI/bge-reranker-v2-m3", top_k=5)
    >>> RerankerConfig.from_dict(cfg.to_dict()) == cfg
    True

    ``normalize`` means the same on every backend: ``False`` (the default) returns the model's
    raw score (log-odds for pair encoders and LLM rerankers), ``True`` a probability in [0, 1];
    backends whose scores have no probability form (ColBERT, listwise) refuse ``True``.
    ``options`` holds backend-specific settings, checked against the backend's typed schema
    (``rerankit info`` lists them); text values (from a command line) are parsed by type.
    """

    model: str
    backend: str | None = None
    device: str | None = None
    dtype: str | None = None
    batch_size: int = 32
    max_length: int = 512
    top_k: int | None = None
    score_threshold: float | None = None
    normalize: bool = False
    api_key: Secret | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigurationError(f"model must be a non-empty string, got {self.model!r}")
        if self.backend is not None and not isinstance(self.backend, str):
            raise ConfigurationError(f"backend must be a string or None, got {self.backend!r}")
        for name in ("batch_size", "max_length"):
            value = getattr(self, name)
            if not is_positive_int(value):
                raise ConfigurationError(f"{name} must be a positive integer, got {value!r}")
        if self.top_k is not None and not is_positive_int(self.top_k):
            raise ConfigurationError(
                f"top_k must be a positive integer or None, got {self.top_k!r}"
            )
        threshold = self.score_threshold
        if threshold is not None and not is_finite_number(threshold):
            raise ConfigurationError(
                f"score_threshold must be a finite number or None, got {threshold!r}"
            )
        if self.normalize is None:  # configs saved before normalize had one default
            object.__setattr__(self, "normalize", False)
        if not isinstance(self.normalize, bool):
            raise ConfigurationError(f"normalize must be True or False, got {self.normalize!r}")
        if self.dtype is not None and self.dtype not in DTYPES:
            raise ConfigurationError(f"dtype must be one of {DTYPES} or None, got {self.dtype!r}")
        if self.api_key is not None and not isinstance(self.api_key, Secret):
            raise ConfigurationError(
                "api_key must be a rerankit.Secret (Secret.from_env('VAR') or "
                f"Secret.from_token(...)), got {type(self.api_key).__name__}"
            )
        if not isinstance(self.options, Mapping):
            raise ConfigurationError(f"options must be a mapping, got {self.options!r}")
        object.__setattr__(self, "options", dict(self.options))

    @classmethod
    def from_kwargs(cls, model: str, **kwargs: Any) -> RerankerConfig:
        """Build a config from keyword arguments; names that are not fields go to ``options``."""
        known = {f.name for f in fields(cls)} - {"options"}
        options = dict(kwargs.pop("options", None) or {})
        flat = {k: v for k, v in kwargs.items() if k not in known}
        both = sorted(set(flat) & set(options))
        if both:
            raise ConfigurationError(
                f"options {both} are given both as settings and under options=; give each once"
            )
        options.update(flat)
        api_key = kwargs.pop("api_key", None)
        if isinstance(api_key, str):
            api_key = Secret.from_token(api_key)
        settings = {k: v for k, v in kwargs.items() if k in known and k != "api_key"}
        return cls(model=model, api_key=api_key, options=options, **_parsed_fields(settings))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict; a literal API key raises instead of being written out."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["api_key"] = None if self.api_key is None else self.api_key.to_dict()
        data["options"] = dict(self.options)
        try:
            json.dumps(data, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"config is not JSON-serialisable: {exc}") from exc
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RerankerConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`ConfigurationError`."""
        valid = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - valid)
        if unknown:
            raise ConfigurationError(
                f"unknown config keys {unknown}; valid keys are {sorted(valid)}"
            )
        if "model" not in data:
            raise ConfigurationError("config needs a 'model' key")
        values = dict(data)
        api_key = values.get("api_key")
        if isinstance(api_key, Mapping):
            values["api_key"] = Secret.from_dict(api_key)
        return cls(**_parsed_fields(values))


def resolve_config(
    config: RerankerConfig | Mapping[str, Any] | None = None, **settings: Any
) -> RerankerConfig:
    """One config from a :class:`RerankerConfig`, its dict form, or keyword settings.

    Settings that are not ``None`` override the matching fields of ``config``; this is how the
    framework adapters accept "a config file plus a few overrides".
    """
    given = {k: v for k, v in settings.items() if v is not None}
    if config is None:
        if "model" not in given:
            raise ConfigurationError("pass a Reranker, a config, or at least model=...")
        return RerankerConfig.from_kwargs(**given)
    base = config if isinstance(config, RerankerConfig) else RerankerConfig.from_dict(config)
    if not given:
        return base
    merged = {f.name: getattr(base, f.name) for f in fields(base)}
    options = {**merged.pop("options"), **given.pop("options", {})}
    return RerankerConfig.from_kwargs(**{**merged, **given}, options=options)


def _parsed_fields(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` with every typed field parsed by :data:`FIELDS` (``None`` stays unset)."""
    return {
        key: parse_value(key, FIELDS[key], value) if key in FIELDS and value is not None else value
        for key, value in settings.items()
    }


ConfigSource = str | os.PathLike[str] | Mapping[str, Any] | Sequence[Any]
SHAPES = (
    "{models: {name: config}}, {rerankers: [config, ...]}, a list of configs, "
    "or one config with a model: key"
)


def load_configs(
    source: ConfigSource, *, label: str | None = None, extra: str = "serve"
) -> dict[str, RerankerConfig]:
    """Named configs from a YAML or JSON file, or from data already loaded; one loader for all.

    ``rerankit eval --config``, ``rerankit serve --config`` and :func:`rerankit.ray.deployment`
    read the same shapes: ``{models: {name: config}}`` (the keys are the names),
    ``{rerankers: [config, ...]}``, a bare list of configs, or one config. A config that is not
    under ``models:`` may carry ``name:``; else it is named ``backend:model`` (``auto:model``
    when the backend is inferred). Config keys are :class:`RerankerConfig` fields and backend
    options (flat, or under ``options:``); ``api_key`` is a reference such as
    ``{type: env_var, env_var: JINA_API_KEY}``. Two configs with one name are an error, and so
    is a key written twice in one mapping of the file. Messages start with ``label`` (default:
    the file's path). ``extra`` is the pip extra named when PyYAML is missing.

    >>> configs = load_configs({"models": {"bge": {"model": "BAAI/bge-reranker-base", "top_k": 5}}})
    >>> configs["bge"].top_k
    5
    """
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        label = str(path) if label is None else label
        data = _read_config_file(path, label, extra)
    else:
        label = "config" if label is None else label
        data = source
    configs: dict[str, RerankerConfig] = {}
    for name, where, values in _config_entries(data, label):
        config = _entry_config(values, where)
        name = f"{config.backend or 'auto'}:{config.model}" if name is None else name
        if name in configs:
            raise ConfigurationError(
                f"{label}: two configs are named {name!r}; give each its own name"
            )
        configs[name] = config
    return configs


def _config_entries(data: object, label: str) -> list[tuple[str | None, str, object]]:
    """(explicit name or None, where it is for messages, the config) for every config."""
    if isinstance(data, Mapping):
        for key in ("models", "rerankers"):
            others = sorted(str(k) for k in data if k != key)
            if key in data and others:
                raise ConfigurationError(f"{label}: unexpected keys {others} beside {key}:")
        if "models" in data:
            models = data["models"]
            if not isinstance(models, Mapping) or not models:
                raise ConfigurationError(
                    f"{label}: models: must map names to configs, got {models!r:.80}"
                )
            entries: list[tuple[str | None, str, object]] = []
            for key, values in models.items():
                where = f"{label}: models.{key}"
                if isinstance(values, Mapping) and "name" in values:
                    raise ConfigurationError(
                        f"{where}: has a name: key, but under models: the key {key!r} is the name"
                    )
                entries.append((str(key), where, values))
            return entries
        if "rerankers" in data:
            return _listed(data["rerankers"], label, "rerankers")
        if "model" in data:
            return [(_explicit_name(data, label), label, data)]
        raise ConfigurationError(
            f"{label}: expected {SHAPES}; got the keys {sorted(str(k) for k in data)}"
        )
    if isinstance(data, Sequence) and not isinstance(data, str | bytes):
        return _listed(data, label, "")
    found = "nothing" if data is None else f"a {type(data).__name__}"
    raise ConfigurationError(f"{label}: expected {SHAPES}; got {found}")


def _listed(items: object, label: str, key: str) -> list[tuple[str | None, str, object]]:
    if not isinstance(items, Sequence) or isinstance(items, str | bytes) or not items:
        raise ConfigurationError(
            f"{label}: {key or 'the list'}: expected a non-empty list of configs, got {items!r:.80}"
        )
    return [
        (_explicit_name(values, f"{label}: {key}[{i}]"), f"{label}: {key}[{i}]", values)
        for i, values in enumerate(items)
    ]


def _explicit_name(values: object, where: str) -> str | None:
    name = values.get("name") if isinstance(values, Mapping) else None
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise ConfigurationError(f"{where}: name must be a non-empty string, got {name!r}")
    return name


def _entry_config(values: object, where: str) -> RerankerConfig:
    if isinstance(values, RerankerConfig):
        return values
    if not isinstance(values, Mapping):
        raise ConfigurationError(
            f"{where}: a config is a mapping with a model: key, got {values!r:.80}"
        )
    settings = {k: v for k, v in values.items() if k != "name"}
    odd = [k for k in settings if not isinstance(k, str)]
    if odd:
        raise ConfigurationError(f"{where}: config keys must be strings, got {odd}")
    if "model" not in settings:
        raise ConfigurationError(f"{where}: a config needs model:, got the keys {sorted(settings)}")
    try:
        if isinstance(settings.get("api_key"), Mapping):
            settings["api_key"] = Secret.from_dict(settings["api_key"])
        return RerankerConfig.from_kwargs(**settings)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{where}: {exc}") from exc


def _read_config_file(path: Path, label: str, extra: str) -> Any:
    """The file's data: JSON for ``.json``, else YAML (a superset of JSON)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{label}: cannot read the config file: {exc}") from exc
    if path.suffix.lower() == ".json":

        def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
            _refuse_repeats([key for key, _ in pairs], label)
            return dict(pairs)

        try:
            return json.loads(text, object_pairs_hook=unique)
        except json.JSONDecodeError as exc:
            raise ConfigurationError(f"{label}: not valid JSON: {exc}") from exc
    yaml: Any = require("yaml", extra=extra, purpose=f"reading the YAML config {label}")
    try:
        # PyYAML keeps the last of two equal keys; walking the node tree first refuses them.
        _refuse_yaml_repeats(yaml.compose(text, Loader=yaml.SafeLoader), yaml, label, set())
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{label}: not valid YAML: {' '.join(str(exc).split())}") from exc


def _refuse_yaml_repeats(node: Any, yaml: Any, label: str, seen: set[int]) -> None:
    if node is None or id(node) in seen:  # an alias points at a node already checked
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        keys = [k for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge"]
        _refuse_repeats([k.value for k in keys if isinstance(k, yaml.ScalarNode)], label)
        children = [v for _, v in node.value]
    else:
        children = node.value if isinstance(node, yaml.SequenceNode) else []
    for child in children:
        _refuse_yaml_repeats(child, yaml, label, seen)


def _refuse_repeats(keys: list[Any], label: str) -> None:
    repeated = sorted({str(k) for k in keys if keys.count(k) > 1})
    if repeated:
        raise ConfigurationError(f"{label}: the keys {repeated} are written twice in one mapping")
