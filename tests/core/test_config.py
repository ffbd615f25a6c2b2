from __future__ import annotations

import json

import pytest

from rerankit import ConfigurationError, RerankerConfig, Secret


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
