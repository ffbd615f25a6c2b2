"""``KEY=VALUE`` text from the command line: one parser for ``--reranker`` specs and ``--option``.

Values stay text. :class:`~rerankit.config.RerankerConfig` parses its own fields and each
backend's typed schema parses its options (``"False"``, ``"false"`` and ``"0"`` are ``False``;
a list is JSON text), so nothing is guessed here: guessing with JSON once turned
``trust_remote_code=False`` into the truthy string ``"False"``.
"""

from __future__ import annotations

from collections.abc import Iterable

from rerankit.config import RerankerConfig
from rerankit.errors import ConfigurationError
from rerankit.options import parse_options
from rerankit.registry import infer_backend, load_backend_class

_CLOSING = {"[": "]", "{": "}"}


def parse_spec(spec: str, *, flag: str) -> dict[str, str]:
    """``KEY=VALUE,KEY=VALUE`` as text values; commas inside ``[...]``, ``{...}`` or quotes stay.

    >>> parse_spec('model=m,providers=["A","B"],query_prefix="[Q] "', flag="--reranker")
    {'model': 'm', 'providers': '["A","B"]', 'query_prefix': '[Q] '}
    """
    return parse_assignments(_split(spec), flag=flag)


def parse_assignments(items: Iterable[str], *, flag: str) -> dict[str, str]:
    """``KEY=VALUE`` items as text values; a key given twice is an error."""
    values: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigurationError(f"{flag} expects KEY=VALUE, got {item!r}")
        if key in values:
            raise ConfigurationError(f"{flag} sets {key} twice")
        values[key] = _unquoted(value.strip())
    return values


def with_flags(items: Iterable[str], **flags: str | None) -> dict[str, str]:
    """``--option`` items plus the command's own flags (``--model``, ``--backend``, ...).

    A setting given both ways is an error, never a silent choice between the two.
    """
    settings = parse_assignments(items, flag="--option")
    for key, value in flags.items():
        if value is not None and key in settings:
            raise ConfigurationError(f"--option {key}= repeats --{key}; pass it once")
        if value is not None:
            settings[key] = value
    return settings


def joined(*groups: dict[str, RerankerConfig]) -> dict[str, RerankerConfig]:
    """Named configs from several places (a file, flags); one name used twice is an error."""
    configs: dict[str, RerankerConfig] = {}
    for group in groups:
        for name, config in group.items():
            if name in configs:
                raise ConfigurationError(
                    f"two rerankers are named {name!r}; give each its own name"
                )
            configs[name] = config
    return configs


def check_options(configs: dict[str, RerankerConfig]) -> None:
    """Parse every config's options against its backend's schema now, before data or models load.

    A typo in the last reranker of an evaluation fails at once, not after the first ones ran.
    """
    for name, config in configs.items():
        backend = load_backend_class(
            infer_backend(config.model) if config.backend is None else config.backend
        )
        try:
            parse_options(
                backend.options_schema, config.options, owner=f"the {backend.name!r} backend"
            )
        except ConfigurationError as exc:
            raise ConfigurationError(f"{name}: {exc}") from exc


def _split(spec: str) -> list[str]:
    """``spec`` cut at the commas outside a bracketed or quoted value.

    A quote or bracket groups only where it opens a value (right after ``KEY=``), so a path
    such as ``/data/o'neil/model`` keeps its apostrophe and the settings after it. One left open
    is an error (the spec is not echoed: it may hold a key).
    """
    parts: list[str] = []
    current: list[str] = []
    closers: list[str] = []  # the closing brackets still expected, innermost last
    quote = ""
    for char in spec:
        opens_value = (
            not closers and not quote and current[-1:] == ["="] and current.count("=") == 1
        )
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'" and (closers or opens_value):
            quote = char
        elif char in _CLOSING and (closers or opens_value):
            closers.append(_CLOSING[char])
        elif closers and char == closers[-1]:
            closers.pop()
        elif char == "," and not closers:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    if quote or closers:
        raise ConfigurationError(
            "a quote or bracket that opens a value is never closed; close it, or write the "
            "value without it"
        )
    parts.append("".join(current))
    return parts


def _unquoted(value: str) -> str:
    """A value wrapped in matching quotes loses them (so it may keep spaces or commas)."""
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value
