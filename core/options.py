"""Typed options: one schema per backend, one parser for keyword arguments, YAML/JSON and CLI text.

A backend declares its options as ``{name: Option(...)}``; :func:`parse_options` checks a mapping
against it once, before any model loads. Text from a command line is parsed by the option's type
(``"False"``, ``"false"`` and ``"0"`` are ``False``; ``"64"`` is ``64``); a value of the wrong
type, an unknown key or a bare string where a list belongs is a :class:`ConfigurationError`
that names the option and what it takes.

>>> schema = {"trust_remote_code": Option("bool", False, "run the model folder's own code")}
>>> parse_options(schema, {"trust_remote_code": "False"}, owner="the 'x' backend")
{'trust_remote_code': False}
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from rerankit.errors import ConfigurationError

OptionType = Literal["bool", "int", "float", "str", "list", "int-list", "enum"]

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


@dataclass(frozen=True, slots=True)
class Option:
    """One option: its type, its default (``None``: unset), a one-line help and its bounds.

    ``minimum`` bounds a number, or each number of an ``"int-list"``.
    """

    type: OptionType
    default: Any
    help: str
    minimum: float | None = None
    choices: tuple[str, ...] = ()

    def describe(self) -> str:
        """``type (default ...)``, as ``rerankit info`` lists it."""
        kind = f"one of {', '.join(self.choices)}" if self.type == "enum" else self.type
        if self.minimum is not None:
            kind += f" >= {self.minimum:g}"
        return f"{kind}, default {self.default!r}"


OptionSchema = Mapping[str, Option]


def parse_options(schema: OptionSchema, given: Mapping[str, Any], *, owner: str) -> dict[str, Any]:
    """Every option of ``schema``: the parsed value from ``given``, else its default.

    ``None`` in ``given`` means "not passed". Unknown keys raise, listing the valid names.
    """
    unknown = sorted(set(given) - set(schema))
    if unknown:
        raise ConfigurationError(
            f"{owner} does not accept the options {unknown}; valid options are {sorted(schema)}"
        )
    parsed = {}
    for name, option in schema.items():
        value = given.get(name)
        parsed[name] = option.default if value is None else parse_value(name, option, value)
    return parsed


def parse_value(name: str, option: Option, value: Any) -> Any:
    """``value`` as ``option``'s type (text is parsed), or a ConfigurationError naming ``name``."""
    parsed = _PARSERS[option.type](value, option)
    if parsed is None:
        raise ConfigurationError(
            f"option {name} takes {_expected(option)}, got {value!r}"
            + (f" ({type(value).__name__})" if not isinstance(value, str) else "")
        )
    if option.minimum is not None:
        numbers = parsed if option.type == "int-list" else [parsed]
        if min(numbers) < option.minimum:
            each = " each" if option.type == "int-list" else ""
            raise ConfigurationError(
                f"option {name} must{each} be >= {option.minimum:g}, got {parsed!r}"
            )
    return parsed


def _bool(value: Any, option: Option) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    return None


def _int(value: Any, option: Option) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii():  # int() would also read other scripts' digits
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def _float(value: Any, option: Option) -> float | None:
    if isinstance(value, bool) or (isinstance(value, str) and not value.isascii()):
        return None
    try:
        number = float(value.strip()) if isinstance(value, str) else value
        if isinstance(number, int):
            number = float(number)  # an int too large for a float raises OverflowError here
    except (ValueError, OverflowError):
        return None
    return number if isinstance(number, float) and math.isfinite(number) else None


def _str(value: Any, option: Option) -> str | None:
    return value if isinstance(value, str) else None


def _json_list(value: Any) -> Any:
    """Text from a command line as a JSON list (never a string's characters); else ``value``."""
    if not isinstance(value, str):
        return value
    if not value.strip().startswith("["):
        return None
    try:
        return json.loads(value)
    except ValueError:
        return None


def _list(value: Any, option: Option) -> list[str] | None:
    value = _json_list(value)
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return list(value)
    return None


def _int_list(value: Any, option: Option) -> list[int] | None:
    value = _json_list(value)
    numbers = isinstance(value, list | tuple) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    )
    return list(value) if numbers and value else None


def _enum(value: Any, option: Option) -> str | None:
    if isinstance(value, str) and value.strip().lower() in option.choices:
        return value.strip().lower()
    return None


_PARSERS: dict[str, Callable[[Any, Option], Any]] = {
    "bool": _bool,
    "int": _int,
    "float": _float,
    "str": _str,
    "list": _list,
    "int-list": _int_list,
    "enum": _enum,
}


def _expected(option: Option) -> str:
    if option.type == "bool":
        return "true or false (also 1/0, yes/no, on/off as text)"
    if option.type == "list":
        return 'a list of strings (on a command line, JSON: ["a", "b"])'
    if option.type == "int-list":
        return "a non-empty list of ints (on a command line, JSON: [8, 16])"
    if option.type == "enum":
        return f"one of {list(option.choices)}"
    if option.type == "str":
        return "a string (quote numbers in YAML)"
    return f"an {option.type}" if option.type == "int" else "a finite number"
