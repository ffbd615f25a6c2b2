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
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import urlsplit, urlunsplit

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
# Pillow's decompression-bomb warning limit (Image.MAX_IMAGE_PIXELS): images with more pixels
# are refused before they are decoded (a small file can hold a huge canvas).
MAX_PIXELS = 89_478_485
# The leading bytes of the image formats rerankit reads (PNG, JPEG, GIF, TIFF; WebP and BMP are
# checked in looks_like_image), for telling an image from any other file without decoding it.
SIGNATURES = (
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",
    b"GIF87a",
    b"GIF89a",
    b"II*\x00",
    b"MM\x00*",
)


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

    def __repr__(self) -> str:
        return f"ImagePassage(image={describe(self.image)}, text={self.text!r})"


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
        return repr(_without_credentials(source) if URL.match(source) else source)
    return f"<PIL image {getattr(source, 'size', '?')}>"


def read_image(source: ImageSource, policy: ImagePolicy = ImagePolicy()) -> Image:
    """``source`` decoded as an RGB PIL image; :class:`InvalidInputError` if it cannot be."""
    pil = require("PIL.Image", extra="vlm", purpose="Reading image documents")
    if _is_pil(source):
        image: Image = source  # type: ignore[assignment]
        check_pixels(image.size, image)
        return _rgb(image)
    data = read_bytes(source, policy)
    try:
        with pil.open(io.BytesIO(data)) as opened:
            check_pixels(opened.size, source)
            opened.load()
            decoded = _rgb(opened)
    except pil.DecompressionBombError as exc:
        raise InvalidInputError(f"image {describe(source)} has too many pixels: {exc}") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise InvalidInputError(
            f"image {describe(source)} could not be decoded ({type(exc).__name__}: {exc}); "
            "pass a PNG, JPEG, WebP, GIF, BMP or TIFF image"
        ) from None
    return decoded


def read_size(data: bytes, source: ImageSource) -> tuple[int, int]:
    """The (width, height) in ``data``'s header, checked against :data:`MAX_PIXELS`.

    Only the header is read: the pixels stay encoded. :class:`InvalidInputError` when ``data``
    is no image Pillow reads.
    """
    pil = require("PIL.Image", extra="vlm", purpose="Reading image documents")
    try:
        with pil.open(io.BytesIO(data)) as header:
            size: tuple[int, int] = header.size
    except pil.DecompressionBombError as exc:
        raise InvalidInputError(f"image {describe(source)} has too many pixels: {exc}") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise InvalidInputError(
            f"image {describe(source)} is {len(data)} bytes that are not an image file "
            f"({type(exc).__name__}); pass a PNG, JPEG, WebP, GIF, BMP or TIFF image"
        ) from None
    check_pixels(size, source)
    return size


def check_pixels(size: tuple[int, int], source: ImageSource) -> None:
    """Refuse an image of more than :data:`MAX_PIXELS` pixels before it is decoded."""
    width, height = size
    if width * height > MAX_PIXELS:
        raise InvalidInputError(
            f"image {describe(source)} is {width}x{height} pixels, over the {MAX_PIXELS}-pixel "
            "limit (Pillow's decompression-bomb guard); downscale it first"
        )


def looks_like_image(data: bytes) -> bool:
    """Whether ``data`` starts like an image file that rerankit reads."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return True
    if data[:2] == b"BM" and data[6:10] == b"\x00\x00\x00\x00":  # BMP: size, then 4 zeros
        return True
    return data.startswith(SIGNATURES)


def _rgb(image: Image) -> Image:
    """``image`` upright (its EXIF orientation) in RGB, transparency composited onto white.

    As transformers' ``load_image`` and ``convert_to_rgb`` do: a transparent page keeps its
    content instead of turning black.
    """
    from PIL import ImageOps

    upright = ImageOps.exif_transpose(image) or image
    if upright.mode == "RGB":
        return upright
    if upright.mode in ("RGBA", "LA", "PA") or "transparency" in upright.info:
        from PIL import Image as PILImage

        rgba = upright.convert("RGBA")
        canvas = PILImage.new("RGBA", rgba.size, (255, 255, 255, 255))
        canvas.alpha_composite(rgba)
        return canvas.convert("RGB")
    return upright.convert("RGB")


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
    data = read_bytes(source, policy)
    if not looks_like_image(data):
        raise InvalidInputError(
            f"image {describe(source)} is {len(data)} bytes that are not a PNG, JPEG, WebP, GIF, "
            "BMP or TIFF file; only image files are sent as images"
        )
    return base64.b64encode(data).decode("ascii")


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
    """A regular file's bytes, never more than ``max_bytes`` (devices and pipes are refused)."""
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            raise InvalidInputError(f"image {describe(source)} is not a regular file")
        with path.open("rb") as file:
            data = file.read(policy.max_bytes + 1)
    except OSError as exc:
        raise InvalidInputError(f"image file {describe(source)} cannot be read: {exc}") from None
    return _bounded(data, source, policy)


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
    """``url``'s body, within ``policy.timeout`` seconds in all and ``max_bytes`` bytes."""
    shown = describe(url)
    if not policy.allow_urls:
        raise InvalidInputError(
            f"image {shown} is a URL and fetching images is off; pass fetch_images=True to let "
            "rerankit download it, or pass the file, bytes or base64 instead"
        )
    httpx = require("httpx", extra="vlm", purpose="Fetching image URLs")
    deadline = time.monotonic() + policy.timeout
    try:
        with httpx.stream("GET", url, timeout=policy.timeout, follow_redirects=True) as response:
            response.raise_for_status()
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > policy.max_bytes:
                    _too_big(url, size, policy)
                if time.monotonic() > deadline:
                    raise InvalidInputError(
                        f"image {shown} could not be fetched within {policy.timeout} s"
                    )
                chunks.append(chunk)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        reason = str(exc) if isinstance(exc, httpx.HTTPError) else type(exc).__name__
        raise InvalidInputError(
            f"image {shown} could not be fetched: {_without_credentials(reason)}"
        ) from None
    return b"".join(chunks)


def _without_credentials(text: str) -> str:
    """URLs in ``text`` without user:password and query strings (which may hold tokens)."""

    def clean(match: re.Match[str]) -> str:
        try:
            parts = urlsplit(match.group(0))
            host, port = parts.hostname or "", parts.port
        except ValueError:  # not a parseable URL: show none of it
            return "<an unparseable URL>"
        netloc = host if port is None else f"{host}:{port}"
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))

    return re.sub(r"https?://[^\s'\"]+", clean, text)
