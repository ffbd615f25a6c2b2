"""Image documents: the forms an image may be given in, and how it is read, lazily and bounded.

A :class:`~rerankit.Document` carries ``image=``: a file path (``str`` or ``os.PathLike``), the
file's ``bytes``, a ``PIL.Image.Image``, base64 text, a ``data:image/...;base64,...`` URI, or an
``http(s)`` URL. Nothing is decoded when the document is made: a backend that takes images
reads it when it scores (:func:`read_image`), or sends it to a service as it is
(:func:`image_payload`). A URL is fetched here only when the caller allows it
(:class:`ImagePolicy`), with a timeout and a size limit; otherwise it is refused, never fetched
behind the caller's back. Decoding and fetching need the ``vlm`` extra (Pillow; httpx for URLs).
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from rerankit._optional import require
from rerankit.errors import InvalidInputError

if TYPE_CHECKING:
    from PIL.Image import Image

# What ``Document(image=...)`` accepts (a PIL image is accepted without importing PIL here).
ImageSource: TypeAlias = "str | bytes | os.PathLike[str] | Image"

DATA_URI = re.compile(r"^data:(image/[\w.+-]+)?(;[\w=.+-]+)*;base64,", re.IGNORECASE)
URL = re.compile(r"^https?://", re.IGNORECASE)
BASE64 = re.compile(r"^[A-Za-z0-9+/\s]+={0,2}\s*$")
# A file path is shorter than this; longer text is read as base64 without touching the disk.
LONGEST_PATH = 4096


@dataclass(frozen=True, slots=True)
class ImagePolicy:
    """How images may be read: whether ``http(s)`` URLs may be fetched, in what time and size.

    ``max_bytes`` bounds every encoded image (file, bytes, base64 or download), so one document
    cannot exhaust memory; Pillow's decompression-bomb limit bounds the decoded pixels.
    """

    allow_urls: bool = False
    timeout: float = 10.0
    max_bytes: int = 32 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ImagePassage:
    """What a backend that takes images receives for an image document: the image and its text.

    ``text`` is the document's own text (a caption, OCR), ``""`` when it has none.
    """

    image: ImageSource
    text: str = ""


def check_source(source: object, where: str) -> None:
    """Raise :class:`InvalidInputError` unless ``source`` is one of the accepted image forms.

    Cheap: nothing is opened or decoded.
    """
    if isinstance(source, str | bytes | os.PathLike) or _is_pil(source):
        if isinstance(source, str | bytes) and not source.strip():
            raise InvalidInputError(f"{where} is empty; pass an image or leave image=None")
        return
    raise InvalidInputError(
        f"{where} must be a file path, bytes, a PIL image, base64, a data URI or an http(s) URL, "
        f"got {type(source).__name__}"
    )


def describe(source: ImageSource) -> str:
    """A short, safe description of ``source`` for messages (never the whole payload)."""
    if isinstance(source, bytes):
        return f"<{len(source)} bytes>"
    if isinstance(source, os.PathLike):
        return repr(os.fspath(source))
    if isinstance(source, str):
        looks_encoded = len(source) > 64 and BASE64.match(source[:256])
        if DATA_URI.match(source) or looks_encoded or len(source) > 200:
            return f"<{len(source)} characters of base64>"
        return repr(source)
    return f"<PIL image {getattr(source, 'size', '?')}>"


def read_image(source: ImageSource, policy: ImagePolicy = ImagePolicy()) -> Image:
    """``source`` decoded as an RGB PIL image; :class:`InvalidInputError` if it cannot be."""
    pil = require("PIL.Image", extra="vlm", purpose="Reading image documents")
    if _is_pil(source):
        image: Image = source  # type: ignore[assignment]
        return image if image.mode == "RGB" else image.convert("RGB")
    data = read_bytes(source, policy)
    try:
        with pil.open(io.BytesIO(data)) as opened:
            opened.load()
            decoded: Image = opened.convert("RGB")
    except pil.DecompressionBombError as exc:
        raise InvalidInputError(f"image {describe(source)} has too many pixels: {exc}") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise InvalidInputError(
            f"image {describe(source)} could not be decoded ({type(exc).__name__}: {exc}); "
            "pass a PNG, JPEG, WebP, GIF, BMP or TIFF image"
        ) from None
    return decoded


def read_bytes(source: ImageSource, policy: ImagePolicy = ImagePolicy()) -> bytes:
    """The encoded image file behind ``source`` (a PIL image is encoded as PNG)."""
    if _is_pil(source):
        buffer = io.BytesIO()
        source.save(buffer, format="PNG")  # type: ignore[union-attr]
        return _bounded(buffer.getvalue(), source, policy)
    if isinstance(source, bytes):
        return _bounded(source, source, policy)
    if isinstance(source, os.PathLike):
        return _read_file(Path(os.fspath(source)), source, policy)
    if not isinstance(source, str):
        check_source(source, "image")
    text = str(source).strip()
    if DATA_URI.match(text):
        return _bounded(_b64decode(text.split(",", 1)[1], source), source, policy)
    if URL.match(text):
        return _fetch(text, policy)
    if len(text) < LONGEST_PATH and _is_file(Path(text).expanduser()):
        return _read_file(Path(text).expanduser(), source, policy)
    if BASE64.match(text[:256]):
        return _bounded(_b64decode(text, source), source, policy)
    raise InvalidInputError(
        f"image {describe(source)} is not an existing file, a data URI, an http(s) URL or "
        "base64 image data"
    )


def image_payload(source: ImageSource, policy: ImagePolicy = ImagePolicy()) -> str:
    """``source`` as a rerank API takes it: an ``http(s)`` URL as given, else raw base64.

    The service fetches URLs itself, so they are not fetched here.
    """
    if isinstance(source, str) and URL.match(source.strip()):
        return source.strip()
    return base64.b64encode(read_bytes(source, policy)).decode("ascii")


def image_key(source: ImageSource) -> Any:
    """A hashable identity of ``source`` for sharing one decode between documents of a call."""
    if _is_pil(source):
        return ("pil", id(source))
    if isinstance(source, os.PathLike):
        return ("path", os.fspath(source))
    return (type(source).__name__, source)


def _is_pil(source: object) -> bool:
    return any(
        cls.__module__.startswith("PIL.") and cls.__name__ == "Image"
        for cls in type(source).__mro__
    )


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # a name too long for the file system: base64, not a path
        return False


def _b64decode(text: str, source: ImageSource) -> bytes:
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInputError(f"image {describe(source)} is not valid base64") from None


def _read_file(path: Path, source: ImageSource, policy: ImagePolicy) -> bytes:
    try:
        size = path.stat().st_size
        if size > policy.max_bytes:
            _too_big(source, size, policy)
        return path.read_bytes()
    except OSError as exc:
        raise InvalidInputError(f"image file {describe(source)} cannot be read: {exc}") from None


def _bounded(data: bytes, source: ImageSource, policy: ImagePolicy) -> bytes:
    if len(data) > policy.max_bytes:
        _too_big(source, len(data), policy)
    return data


def _too_big(source: ImageSource, size: int, policy: ImagePolicy) -> None:
    raise InvalidInputError(
        f"image {describe(source)} is {size} bytes, over the {policy.max_bytes}-byte limit; "
        "shrink it or raise max_image_bytes"
    )


def _fetch(url: str, policy: ImagePolicy) -> bytes:
    if not policy.allow_urls:
        raise InvalidInputError(
            f"image {url!r} is a URL and fetching images is off; pass fetch_images=True to let "
            "rerankit download it, or pass the file, bytes or base64 instead"
        )
    httpx = require("httpx", extra="vlm", purpose="Fetching image URLs")
    try:
        with httpx.stream("GET", url, timeout=policy.timeout, follow_redirects=True) as response:
            response.raise_for_status()
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > policy.max_bytes:
                    _too_big(url, size, policy)
                chunks.append(chunk)
    except httpx.HTTPError as exc:
        raise InvalidInputError(f"image {url!r} could not be fetched: {exc}") from None
    return b"".join(chunks)
