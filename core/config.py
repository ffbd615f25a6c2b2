"""RerankerConfig: everything needed to build a reranker, as a JSON-safe, secret-free value."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from rerankit.errors import ConfigurationError
from rerankit.options import Option, OptionSchema, parse_value
from rerankit.secrets import Secret

DTYPES = ("float32", "float16", "bfloat16")

# The typed fields of RerankerConfig, parsed like backend options (text from a command line too).
FIELDS: OptionSchema = {
    "backend": Option("str", None, "backend name; inferred from the model when unset"),
    "device": Option("str", None, "cpu, cuda, cuda:1, mps; the best available when unset"),
    "dtype": Option("enum", None, "weights' dtype; fp16 on CUDA, fp32 elsewhere", choices=DTYPES),
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
        options.update({k: v for k, v in kwargs.items() if k not in known})
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
