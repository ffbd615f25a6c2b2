"""A deterministic image-capable backend for plumbing tests (adapters, serve, eval).

It decodes every image it is given with :func:`rerankit.images.read_image` and scores it by
its mean red value (0-255) plus the number of query words in the document's text, so a test
knows which document must win. It is not a model: reference checks of real vision-language
rerankers live in ``tests/vlm``.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
from PIL import Image

from rerankit import Reranker, RerankerConfig
from rerankit.backends.base import Backend, Passage
from rerankit.images import ImagePassage, read_image
from rerankit.types import Scores


class RedImages(Backend):
    """Score = mean red of the image (0 for text documents) + query words in the text."""

    name: ClassVar[str] = "red-images"
    accepts_images = True
    scale = "logit"

    def __init__(self, config: RerankerConfig) -> None:
        super().__init__(config)
        self.seen: list[list[Passage]] = []  # what each call received, for assertions

    def score(self, query: str, texts: Sequence[Passage]) -> Scores:
        self.seen.append(list(texts))
        return Scores(values=[redness(query, passage) for passage in texts])


def redness(query: str, passage: Passage) -> float:
    """The score :class:`RedImages` gives ``passage`` for ``query``."""
    text = passage.text if isinstance(passage, ImagePassage) else passage
    words = sum(word in text.lower().split() for word in query.lower().split())
    if not isinstance(passage, ImagePassage):
        return float(words)
    red = np.asarray(read_image(passage.image))[:, :, 0]
    return float(red.mean()) + words


def red_images() -> Reranker:
    """A :class:`~rerankit.Reranker` over :class:`RedImages`."""
    return Reranker.from_backend(RedImages(RerankerConfig(model="red-images")))


def png(color: tuple[int, int, int], size: tuple[int, int] = (32, 24)) -> bytes:
    """A solid-colour PNG image's bytes."""
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()
