"""Value types: the documents that go in and the ranked results that come out."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, overload

if TYPE_CHECKING:
    from rerankit.images import ImageSource

# The metadata key under which the framework adapters say what a document's score is.
SCORE_SCALE_KEY = "rerank_score_scale"


@dataclass(frozen=True, slots=True)
class Document:
    """A text or image to rerank, with an optional id and metadata that rerankit never touches.

    >>> Document(text="Paris is the capital of France.", id="d1", metadata={"source": "wiki"})
    Document(text='Paris is the capital of France.', id='d1', metadata={'source': 'wiki'})

    ``image`` makes it an image document (a page screenshot, a figure): a file path, bytes, a
    PIL image, base64, a data URI or an ``http(s)`` URL (see :mod:`rerankit.images`); ``text``
    is then its caption or OCR, or ``""``. Only backends that take images rank image documents
    (``backend="vlm"``, the Jina API with jina-reranker-m0); the others raise
    :class:`~rerankit.errors.InvalidInputError`. The image is read only when it is scored.
    """

    text: str = ""
    id: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    image: ImageSource | None = None

    def __repr__(self) -> str:
        from rerankit.images import describe

        image = "" if self.image is None else f", image={describe(self.image)}"
        return (
            f"Document(text={self.text!r}, id={self.id!r}, metadata={dict(self.metadata)!r}{image})"
        )


@dataclass(frozen=True, slots=True)
class ScoredDocument:
    """One ranked document: its position in the input, its score and the document itself.

    ``document`` is the caller's own object (a ``str`` or a :class:`Document`), unchanged.
    """

    index: int
    score: float
    document: str | Document

    @property
    def text(self) -> str:
        """The text that was scored."""
        return self.document if isinstance(self.document, str) else self.document.text


@dataclass(frozen=True, slots=True)
class RankResult(Sequence[ScoredDocument]):
    """Documents sorted by descending score (ties keep input order), cut by top_k / threshold.

    Behaves as a sequence of :class:`ScoredDocument`; also says which backend and model produced
    the scores, what the scores are (``scale``: ``"logit"``, ``"probability"``, ``"maxsim"``,
    ``"service"`` or ``"rank"``, see the README), how many documents the backend had to
    truncate, and any backend usage figures.
    """

    items: tuple[ScoredDocument, ...]
    backend: str
    model: str
    truncated: int = 0
    usage: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    scale: str = "unspecified"

    @overload
    def __getitem__(self, index: int) -> ScoredDocument: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[ScoredDocument, ...]: ...

    def __getitem__(self, index: int | slice) -> ScoredDocument | tuple[ScoredDocument, ...]:
        return self.items[index]

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[ScoredDocument]:
        return iter(self.items)

    @property
    def indices(self) -> list[int]:
        """Input positions of the returned documents, best first."""
        return [item.index for item in self.items]

    @property
    def scores(self) -> list[float]:
        """Scores of the returned documents, best first."""
        return [item.score for item in self.items]


@dataclass(frozen=True, slots=True)
class Scores:
    """What a backend returns: one float per input text, in input order."""

    values: list[float]
    truncated: int = 0
    usage: Mapping[str, float] = field(default_factory=dict)
    max_tokens: int | None = None  # the length documents were truncated to, for the warning
    windows: int = 1  # windows of max_tokens each document was read as (max_windows), likewise
    # the option other than max_length that sets max_tokens, named in the warning
    length_option: str | None = None
