"""What the framework adapters share about image documents: MIME types and image bytes.

Each adapter finds a framework object's image (a LlamaIndex ``ImageNode``, a Haystack ``blob``,
a LangChain metadata key) and hands it to rerankit as ``Document(image=..., text=...)``; the
image itself is read, checked and decoded by rerankit (:mod:`rerankit.images`) when it is scored.
"""

from __future__ import annotations

import base64
import binascii

from rerankit.errors import InvalidInputError
from rerankit.images import looks_like_image

__all__ = ["check_image_mime", "decode_base64", "is_image_mime", "looks_like_image"]


def is_image_mime(mime: object) -> bool:
    """Whether ``mime`` names an image type (``image/...``)."""
    return isinstance(mime, str) and mime.strip().lower().startswith("image/")


def check_image_mime(mime: str | None, what: str) -> None:
    """Raise :class:`InvalidInputError` when ``mime`` is given and is not an image type."""
    if mime and not is_image_mime(mime):
        raise InvalidInputError(
            f"{what} has MIME type {mime!r}, which is not an image; rerankit ranks images "
            "(PNG, JPEG, WebP, GIF, BMP, TIFF) and text, so convert it to either first"
        )


def decode_base64(data: bytes | str, what: str) -> bytes:
    """``data`` (base64) decoded; :class:`InvalidInputError` naming ``what`` if it is not base64."""
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInputError(f"{what} is not valid base64 image data") from None
