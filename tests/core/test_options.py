"""The typed option schema: one parser for keyword arguments, YAML/JSON values and CLI text."""

from __future__ import annotations

from typing import Any

import pytest

from rerankit import ConfigurationError, RerankerConfig
from rerankit.options import Option, parse_options

SCHEMA = {
    "trust_remote_code": Option("bool", False, "run remote code"),
    "max_batch_tokens": Option("int", None, "padded tokens per batch", minimum=1),
    "timeout": Option("float", 30.0, "seconds", minimum=0.001),
    "providers": Option("list", None, "ONNX Runtime providers"),
    "dialect": Option("enum", "jina", "wire format", choices=("jina", "tei")),
    "revision": Option("str", None, "hub revision"),
}


def _parse(**given: Any) -> dict[str, Any]:
    return parse_options(SCHEMA, given, owner="the 'x' backend")


@pytest.mark.parametrize("text", ["False", "false", "0", "no", "off", " FALSE ", 0, False])
def test_false_in_every_spelling_is_false(text: object) -> None:
    assert _parse(trust_remote_code=text)["trust_remote_code"] is False


@pytest.mark.parametrize("text", ["True", "true", "1", "yes", "on", 1, True])
def test_true_in_every_spelling_is_true(text: object) -> None:
    assert _parse(trust_remote_code=text)["trust_remote_code"] is True


@pytest.mark.parametrize("bad", ["Flase", "", 2, 0.0, [], "None"])
def test_anything_else_is_not_a_bool(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="option trust_remote_code takes true or false"):
        _parse(trust_remote_code=bad)


def test_defaults_fill_every_option_and_none_means_unset() -> None:
    assert _parse(timeout=None) == {
        "trust_remote_code": False,
        "max_batch_tokens": None,
        "timeout": 30.0,
        "providers": None,
        "dialect": "jina",
        "revision": None,
    }


def test_numbers_from_text_and_their_bounds() -> None:
    assert _parse(max_batch_tokens="4096", timeout="2.5") == {
        **_parse(),
        "max_batch_tokens": 4096,
        "timeout": 2.5,
    }
    with pytest.raises(ConfigurationError, match="max_batch_tokens must be >= 1, got 0"):
        _parse(max_batch_tokens="0")
    for bad in ("4k", 2.5, True, "nan"):
        with pytest.raises(ConfigurationError, match="max_batch_tokens takes an int"):
            _parse(max_batch_tokens=bad)
    with pytest.raises(ConfigurationError, match="timeout takes a finite number"):
        _parse(timeout="inf")


def test_a_string_is_never_a_list_of_characters() -> None:
    with pytest.raises(
        ConfigurationError, match=r'providers takes a list of strings.*\["a", "b"\]'
    ):
        _parse(providers="CPUExecutionProvider")
    assert _parse(providers='["CPUExecutionProvider"]')["providers"] == ["CPUExecutionProvider"]
    assert _parse(providers=("A", "B"))["providers"] == ["A", "B"]
    with pytest.raises(ConfigurationError):
        _parse(providers=[1, 2])


def test_enums_strings_and_unknown_keys() -> None:
    assert _parse(dialect="TEI")["dialect"] == "tei"
    with pytest.raises(ConfigurationError, match=r"one of \['jina', 'tei'\]"):
        _parse(dialect="cohere")
    with pytest.raises(ConfigurationError, match="quote numbers"):
        _parse(revision=1234)
    with pytest.raises(ConfigurationError, match=r"valid options are \[.*'revision'"):
        _parse(revison="main")


def test_config_fields_parse_text_the_same_way() -> None:
    config = RerankerConfig.from_kwargs(
        "m", batch_size="8", normalize="False", top_k="3", score_threshold="0.5", dtype="float16"
    )
    assert (config.batch_size, config.normalize, config.top_k) == (8, False, 3)
    assert (config.score_threshold, config.dtype) == (0.5, "float16")
    assert RerankerConfig.from_dict({"model": "m", "normalize": "true"}).normalize is True
    assert RerankerConfig.from_dict({"model": "m", "normalize": None}).normalize is False
    with pytest.raises(ConfigurationError, match="batch_size must be >= 1"):
        RerankerConfig.from_kwargs("m", batch_size="0")
    with pytest.raises(ConfigurationError, match="dtype takes one of"):
        RerankerConfig.from_kwargs("m", dtype="int4")


def test_only_ascii_numbers_and_finite_floats() -> None:
    with pytest.raises(ConfigurationError, match="max_batch_tokens takes an int"):
        _parse(max_batch_tokens="\u0661\u0662")  # Arabic-Indic 12
    for huge in (10**400, "1e400", "\u0661\u066b\u0665"):
        with pytest.raises(ConfigurationError, match="timeout takes a finite number"):
            _parse(timeout=huge)
    assert _parse(timeout=2)["timeout"] == 2.0


def test_an_option_given_twice_is_an_error() -> None:
    with pytest.raises(ConfigurationError, match=r"\['max_batch_tokens'\] are given both"):
        RerankerConfig.from_kwargs("m", max_batch_tokens=1, options={"max_batch_tokens": 2})


def test_int_lists_from_lists_and_json_text_never_a_bare_string() -> None:
    schema = {"layers": Option("int-list", None, "layers", minimum=1)}

    def parse(value: object) -> Any:
        return parse_options(schema, {"layers": value}, owner="the 'x' backend")["layers"]

    assert parse("[8]") == [8]
    assert parse(" [8, 16] ") == [8, 16]
    assert parse((4, 24)) == [4, 24]
    assert parse([3]) == [3]
    for bad in ("8", "8,16", "[8", '["8"]', "[]", [], [True], [1.5], 8, "[8.0]"):
        with pytest.raises(ConfigurationError, match=r"layers takes a non-empty list of ints"):
            parse(bad)
    with pytest.raises(ConfigurationError, match=r"layers must each be >= 1, got \[8, 0\]"):
        parse("[8, 0]")
    assert schema["layers"].describe() == "int-list >= 1, default None"
