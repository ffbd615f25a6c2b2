from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from rerankit import ConfigurationError, MissingDependencyError, RerankerConfig, Secret
from rerankit.config import load_configs


def test_round_trip_is_json_safe_and_equal() -> None:
    cfg = RerankerConfig(
        model="BAAI/bge-reranker-v2-m3",
        backend="cross-encoder",
        device="cpu",
        batch_size=16,
        max_length=256,
        top_k=5,
        score_threshold=0.0,
        normalize=False,
        api_key=Secret.from_env("JINA_API_KEY"),
        options={"max_query_length": 64},
    )
    data = json.loads(json.dumps(cfg.to_dict()))
    assert RerankerConfig.from_dict(data) == cfg
    assert data["api_key"] == {"type": "env_var", "env_var": "JINA_API_KEY"}


def test_literal_key_refuses_to_serialise_and_never_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    token = "sk-very-secret-123"
    cfg = RerankerConfig(
        model="jina-reranker-v2-base-multilingual", api_key=Secret.from_token(token)
    )
    with pytest.raises(ConfigurationError) as info:
        cfg.to_dict()
    assert token not in str(info.value)
    assert token not in repr(cfg)
    assert token not in str(cfg.api_key)
    assert cfg.api_key is not None
    assert cfg.api_key.resolve() == token


def test_env_secret_resolves_at_use(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = Secret.from_env("RERANKIT_TEST_KEY")
    monkeypatch.delenv("RERANKIT_TEST_KEY", raising=False)
    assert secret.resolve() is None
    monkeypatch.setenv("RERANKIT_TEST_KEY", "abc")
    assert secret.resolve() == "abc"
    assert "abc" not in repr(secret)


def test_unknown_keys_are_rejected_with_the_valid_ones() -> None:
    with pytest.raises(ConfigurationError, match="unknown config keys \\['batchsize'\\]"):
        RerankerConfig.from_dict({"model": "m", "batchsize": 3})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("top_k", 0),
        ("top_k", -1),
        ("top_k", True),
        ("batch_size", 0),
        ("max_length", 0),
        ("score_threshold", float("nan")),
        ("score_threshold", float("inf")),
        ("dtype", "float64"),
        ("normalize", "yes"),
    ],
)
def test_invalid_values_raise(field: str, value: object) -> None:
    with pytest.raises(ConfigurationError, match=field):
        RerankerConfig(model="m", **{field: value})  # type: ignore[arg-type]


def test_falsy_values_are_kept() -> None:
    cfg = RerankerConfig(model="m", score_threshold=0.0, normalize=False)
    again = RerankerConfig.from_dict(cfg.to_dict())
    assert again.score_threshold == 0.0
    assert again.score_threshold is not None
    assert again.normalize is False


def test_from_kwargs_splits_fields_and_options() -> None:
    cfg = RerankerConfig.from_kwargs("m", backend="cross-encoder", top_k=3, max_query_length=32)
    assert cfg.top_k == 3
    assert cfg.options == {"max_query_length": 32}


# -- load_configs: one loader for eval, serve and Ray ----------------------------------------

SHAPES = {
    "models": {"models": {"bge": {"model": "BAAI/bge-reranker-base", "batch_size": "64"}}},
    "rerankers": {
        "rerankers": [{"name": "bge", "model": "BAAI/bge-reranker-base", "batch_size": 64}]
    },
    "list": [{"name": "bge", "model": "BAAI/bge-reranker-base", "options": {}, "batch_size": 64}],
    "single": {"name": "bge", "model": "BAAI/bge-reranker-base", "batch_size": "64"},
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("form", ["mapping", "json", "yaml"])
def test_load_configs_reads_every_shape(shape: str, form: str, tmp_path: Path) -> None:
    import yaml

    data = SHAPES[shape]
    source: object = data
    if form == "json":
        source = tmp_path / "configs.json"
        source.write_text(json.dumps(data))
    elif form == "yaml":
        source = tmp_path / "configs.yaml"
        source.write_text(yaml.safe_dump(data))
    configs = load_configs(source)  # type: ignore[arg-type]
    assert configs == {"bge": RerankerConfig(model="BAAI/bge-reranker-base", batch_size=64)}


def test_load_configs_names_like_eval_and_keeps_options(tmp_path: Path) -> None:
    path = tmp_path / "rerankers.yaml"
    path.write_text(
        "rerankers:\n"
        "  - model: BAAI/bge-reranker-base\n"
        "    trust_remote_code: 'False'\n"
        "  - {model: m, backend: colbert, normalize: 'false', options: {cache_size: 10}}\n"
        "  - {model: j, backend: jina, api_key: {type: env_var, env_var: JINA_API_KEY}}\n"
    )
    configs = load_configs(path)
    assert list(configs) == ["auto:BAAI/bge-reranker-base", "colbert:m", "jina:j"]
    # Backend options stay as written; the backend's typed schema parses them when it loads.
    assert configs["auto:BAAI/bge-reranker-base"].options == {"trust_remote_code": "False"}
    assert configs["colbert:m"].normalize is False
    assert configs["colbert:m"].options == {"cache_size": 10}
    assert configs["jina:j"].api_key == Secret.from_env("JINA_API_KEY")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("models:\n  a: {model: x}\n  a: {model: y}\n", "the keys ['a'] are written twice"),
        ("- {name: a, model: x}\n- {name: a, model: y}\n", "two configs are named 'a'"),
        ("- {model: x}\n- {model: x}\n", "two configs are named 'auto:x'"),
        (
            "models:\n  a: {model: x, batch_size: many}\n",
            "models.a: option batch_size takes an int",
        ),
        ("models:\n  a: {name: b, model: x}\n", "models.a: has a name: key"),
        ("rerankers:\n  - {backend: colbert}\n", "rerankers[0]: a config needs model:"),
        ("rerankers: []\n", "rerankers: expected a non-empty list of configs"),
        ("models: {a: {model: x}}\nport: 8080\n", "unexpected keys ['port'] beside models:"),
        ("foo: 1\n", "expected {models: {name: config}}, {rerankers: [config, ...]}"),
        ("", "got nothing"),
        ("- just a string\n", "[0]: a config is a mapping with a model: key"),
        ("models: {a: {model: x}\n", "not valid YAML: while parsing a flow mapping"),
        ("- {name: '', model: x}\n", "[0]: name must be a non-empty string"),
    ],
)
def test_load_configs_errors_name_the_file_and_the_problem(
    text: str, message: str, tmp_path: Path
) -> None:
    path = tmp_path / "configs.yaml"
    path.write_text(text)
    with pytest.raises(ConfigurationError) as info:
        load_configs(path)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_load_configs_json_duplicates_and_missing_files(tmp_path: Path) -> None:
    path = tmp_path / "configs.json"
    path.write_text('{"models": {"a": {"model": "x"}, "a": {"model": "y"}}}')
    with pytest.raises(ConfigurationError, match=r"the keys \['a'\] are written twice"):
        load_configs(path)
    with pytest.raises(ConfigurationError, match="cannot read the config file"):
        load_configs(tmp_path / "missing.yaml")


def test_yaml_is_imported_only_for_yaml_and_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "yaml", None)  # as if PyYAML were not installed
    as_json = tmp_path / "configs.json"
    as_json.write_text('[{"model": "x"}]')
    assert list(load_configs(as_json)) == ["auto:x"]
    as_yaml = tmp_path / "configs.yaml"
    as_yaml.write_text("- {model: x}\n")
    with pytest.raises(MissingDependencyError, match=r'pip install "rerankit\[eval\]"'):
        load_configs(as_yaml, extra="eval")
