"""The rerank-API wire format: services that speak (nearly) the Jina shape, one small table each.

A :class:`Dialect` builds the JSON body of one call and reads the answer (scores in input
order, usage figures); :class:`~rerankit.remote.transport.HTTPTransport` carries it.

What each service's score is, and so what ``normalize`` does (``RankResult.scale``):

=========  =====================================  ==========================================
dialect    normalize=False                        normalize=True
=========  =====================================  ==========================================
tei        ``raw_scores: true``: the model's      ``raw_scores: false``: TEI's sigmoid of the
           logit (``"logit"``)                    logit (``"probability"``)
infinity   ``raw_scores: true``: the model's      ``raw_scores: false``: infinity's sigmoid
           logit (``"logit"``)                    (``"probability"``)
cohere     ``relevance_score`` as returned        the same numbers: Cohere documents them as
           (``"service"``); there is no raw form  normalised to [0, 1] (``"probability"``)
vllm       ``relevance_score`` as returned        the same numbers: vLLM applies the model's
           (``"service"``)                        activation, the sigmoid for one-logit and
                                                  yes/no rerankers (``"probability"``)
jina       ``relevance_score`` as returned        refused: the Jina API has no raw/normalised
           (``"service"``); there is no raw form  switch, and its scores are not probabilities
                                                  for every model it serves (jina-reranker-v3
                                                  returns a cosine in [-1, 1], the jina-colbert
                                                  models a late-interaction sum)
=========  =====================================  ==========================================

Image documents: only the ``jina`` dialect sends them (the Jina API ranks them with
jina-reranker-m0; ``rerankit serve`` speaks the same shape). A call that holds one sends every
document of that call as an object, in input order: ``{"image": <http(s) URL as given, or raw
base64 without a data: prefix>, "text": <caption>}`` (``"text"`` only when the document has
text) for an image, ``{"text": ...}`` for a text document; a call without images sends plain
strings, as before. The other dialects send text only, and :meth:`Dialect.check_images` refuses
image documents before anything is sent (vLLM takes images for some models, but in its own
``content`` shape, which rerankit does not speak).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rerankit.errors import InvalidInputError, InvalidResponseError

# One document on the wire: a text, or an object (``{"text": ...}``, ``{"image": ..., ...}``).
WireDocument = str | dict[str, str]


@dataclass(frozen=True, slots=True)
class Dialect:
    """How one service family names its endpoint, fields and usage figures, and what it scores."""

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
    # The boolean body field asking for the model's raw logits (true) or their sigmoid (false);
    # None: the service returns its own relevance score only.
    raw_scores_field: str | None = None
    # Without raw scores: whether the service documents its score as a probability in [0, 1].
    relevance_is_probability: bool = False
    # Takes image documents as ``{"image": URL or raw base64, "text"?: ...}`` (the Jina shape).
    takes_images: bool = False

    def body(
        self,
        model: str,
        query: str,
        documents: Sequence[str],
        *,
        normalize: bool,
        images: Sequence[str | None] | None = None,
    ) -> dict[str, Any]:
        """The JSON body asking for a score for every document (raw unless ``normalize``).

        ``images`` holds, per document, its image as sent (a URL or raw base64) or None for a
        text document; with any image, every document goes as an object (see the module).
        """
        body: dict[str, Any] = {
            "query": query,
            self.documents_field: self.wire_documents(documents, images),
        }
        if self.sends_model:
            body["model"] = model
        if self.top_n_field is not None:
            body[self.top_n_field] = len(documents)
        if self.raw_scores_field is not None:
            body[self.raw_scores_field] = not normalize
        body.update(self.extra_body)
        return body

    def wire_documents(
        self, documents: Sequence[str], images: Sequence[str | None] | None = None
    ) -> list[WireDocument]:
        """The documents as the service takes them: plain strings unless one is an image."""
        if images is None or all(image is None for image in images):
            return list(documents)
        self.check_images(next(i for i, image in enumerate(images) if image is not None))
        return [
            {"text": text}
            if image is None
            else ({"image": image, "text": text} if text else {"image": image})
            for text, image in zip(documents, images, strict=True)
        ]

    def check_images(self, position: int) -> None:
        """Raise :class:`InvalidInputError` if this dialect cannot send image documents.

        ``position`` is the first image document's, for the message.
        """
        if not self.takes_images:
            raise InvalidInputError(
                f"documents[{position}] is an image document and the {self.name!r} dialect "
                "sends text documents only; image documents need dialect='jina' (the Jina API "
                "with jina-reranker-m0, or a server that speaks its shape such as rerankit "
                "serve), or rank the image's caption or OCR as text"
            )

    def scale(self, normalize: bool) -> str | None:
        """What the scores are (see ``rerankit.backends.base.SCALES``); None: not available."""
        if not normalize:
            return "service" if self.raw_scores_field is None else "logit"
        if self.raw_scores_field is not None or self.relevance_is_probability:
            return "probability"
        return None

    def scores(self, payload: Any, expected: int, *, where: str) -> list[float]:
        """One finite score per document sent, in input order; ``where`` starts messages.

        The answer must hold every index in ``range(expected)`` exactly once.
        """
        results = (
            payload
            if self.results_field is None
            else (payload.get(self.results_field) if isinstance(payload, dict) else None)
        )
        if not isinstance(results, list):
            raise InvalidResponseError(f"{where}: the response has no list of results")
        scores: dict[int, float] = {}
        duplicates: set[int] = set()
        for item in results:
            index = item.get("index") if isinstance(item, dict) else None
            score = item.get(self.score_field) if isinstance(item, dict) else None
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < expected:
                raise InvalidResponseError(
                    f"{where}: result index {index!r} is not in range(0, {expected})"
                )
            if (
                isinstance(score, bool)
                or not isinstance(score, int | float)
                or not math.isfinite(score)
            ):
                raise InvalidResponseError(
                    f"{where}: result {index} has no finite {self.score_field!r}"
                )
            if index in scores:
                duplicates.add(index)
            scores[index] = float(score)
        missing = sorted(set(range(expected)) - set(scores))
        if duplicates or missing:
            raise InvalidResponseError(
                f"{where}: {expected} documents sent, but indices {missing} are missing "
                f"and {sorted(duplicates)} are repeated in the response"
            )
        return [scores[i] for i in range(expected)]

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
            takes_images=True,  # jina-reranker-m0
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
            raw_scores_field="raw_scores",
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
            relevance_is_probability=True,
        ),
        Dialect(  # vLLM's /v1/rerank: the Jina shape; unknown body fields only draw warnings
            name="vllm",
            default_base_url=None,
            path="/v1/rerank",
            documents_field="documents",
            score_field="relevance_score",
            top_n_field="top_n",
            results_field="results",
            api_key_env=None,
            usage_fields={"total_tokens": ("usage", "total_tokens")},
            relevance_is_probability=True,
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
            extra_body={"return_text": False},
            sends_model=False,
            raw_scores_field="raw_scores",
        ),
    )
}
