"""What the framework adapters share about image documents: MIME types and image bytes.

Each adapter finds a framework object's image (a LlamaIndex ``ImageNode``, a Haystack ``blob``,
a LangChain metadata key) and hands it to rerankit as ``Document(image=..., text=...)``; the
image itself is read, checked and decoded by rerankit (:mod:`rerankit.images`) when it is scored.
"""

from __future__ import annotations

import base64
import binascii

from rerankit.errors import InvalidInputError

# The leading bytes of the image formats rerankit decodes (PNG, JPEG, GIF, BMP, TIFF; WebP is
# RIFF....WEBP), for telling an image blob from any other file when no MIME type says which.
_SIGNATURES = (
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",
    b"GIF87a",
    b"GIF89a",
    b"II*\x00",
    b"MM\x00*",
)


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


def looks_like_image(data: bytes) -> bool:
    """Whether ``data`` starts like an image file that rerankit decodes."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return True
    if data[:2] == b"BM" and data[6:10] == b"\x00\x00\x00\x00":  # BMP: size, then 4 zeros
        return True
    return data.startswith(_SIGNATURES)


def decode_base64(data: bytes | str, what: str) -> bytes:
    """``data`` (base64) decoded; :class:`InvalidInputError` naming ``what`` if it is not base64."""
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInputError(f"{what} is not valid base64 image data") from None
