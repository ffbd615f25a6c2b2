"""Wire formats of rerank services that speak (nearly) the Jina shape, one small table each."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rerankit.errors import ConfigurationError


@dataclass(frozen=True, slots=True)
class Dialect:
    """How one service family names its endpoint, fields and usage figures."""

    name: str
    default_base_url: str | None
    path: str
    documents_field: str
    score_field: str
    top_n_field: str | None
    results_field: str | None  # None: the response body is the bare list of results
    api_key_env: str | None  # None: the service needs no key unless one is given
    usage_fields: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    extra_body: Mapping[str, Any] = field(default_factory=dict)
    sends_model: bool = True

    def body(self, model: str, query: str, documents: Sequence[str]) -> dict[str, Any]:
        """The JSON body asking for a score for every document."""
        body: dict[str, Any] = {"query": query, self.documents_field: list(documents)}
        if self.sends_model:
            body["model"] = model
        if self.top_n_field is not None:
            body[self.top_n_field] = len(documents)
        body.update(self.extra_body)
        return body

    def usage(self, payload: Any) -> dict[str, float]:
        """Billed usage figures found in the response, by rerankit's name for them."""
        found: dict[str, float] = {}
        for name, path in self.usage_fields.items():
            value = payload
            for key in path:
                value = value.get(key) if isinstance(value, Mapping) else None
            if isinstance(value, int | float) and not isinstance(value, bool):
                found[name] = float(value)
        return found


DIALECTS: dict[str, Dialect] = {
    d.name: d
    for d in (
        Dialect(
            name="jina",
            default_base_url="https://api.jina.ai",
            path="/v1/rerank",
            documents_field="documents",
            score_field="relevance_score",
            top_n_field="top_n",
            results_field="results",
            api_key_env="JINA_API_KEY",
            usage_fields={"total_tokens": ("usage", "total_tokens")},
            extra_body={"return_documents": False},
        ),
        Dialect(  # infinity returns `document` as a plain string when asked for documents
            name="infinity",
            default_base_url=None,
            path="/rerank",
            documents_field="documents",
            score_field="relevance_score",
            top_n_field="top_n",
            results_field="results",
            api_key_env=None,
            usage_fields={"total_tokens": ("usage", "total_tokens")},
            extra_body={"return_documents": False},
        ),
        Dialect(  # Cohere v2: `top_n` (never `top_k`), usage in billed search units
            name="cohere",
            default_base_url="https://api.cohere.com",
            path="/v2/rerank",
            documents_field="documents",
            score_field="relevance_score",
            top_n_field="top_n",
            results_field="results",
            api_key_env="CO_API_KEY",
            usage_fields={"search_units": ("meta", "billed_units", "search_units")},
        ),
        Dialect(  # text-embeddings-inference: `texts`, a bare list of {index, score}
            name="tei",
            default_base_url=None,
            path="/rerank",
            documents_field="texts",
            score_field="score",
            top_n_field=None,
            results_field=None,
            api_key_env=None,
            extra_body={"raw_scores": False, "return_text": False},
            sends_model=False,
        ),
    )
}


def get_dialect(name: str) -> Dialect:
    """The dialect called ``name``, or a :class:`ConfigurationError` listing the valid ones."""
    try:
        return DIALECTS[name.lower()]
    except KeyError:
        raise ConfigurationError(
            f"unknown dialect {name!r}; valid dialects are {sorted(DIALECTS)}"
        ) from None
