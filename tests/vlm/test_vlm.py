"""The vlm backend against its peers on the same tiny weights, and its handling of images."""

from __future__ import annotations

import base64
import io
import math
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from PIL import Image

from rerankit import ConfigurationError, Document, InvalidInputError, Reranker
from rerankit.images import ImagePassage
from tests.vlm.references import jina_m0_reference, monovlm_reference, st_qwen3_vl_reference
from tests.vlm_factory import QWEN2_VL_MAX_PIXELS

QUERY = "quarterly revenue by region"


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _close(a: list[float], b: list[float], tolerance: float) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= tolerance for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def monovlm(tiny_monovlm_dir: Path) -> Reranker:
    return Reranker(str(tiny_monovlm_dir), backend="vlm", family="monovlm")


# The tiny Qwen3-VL's image processor bounds, which sentence-transformers uses; the family's own
# defaults are the authors' (4096 to 1843200 pixels).
QWEN3_VL_PIXELS = {"min_pixels": 4096, "max_pixels": 65536}


@pytest.fixture(scope="module")
def qwen3_vl(tiny_qwen3_vl_dir: Path) -> Reranker:
    return Reranker(str(tiny_qwen3_vl_dir), backend="vlm", family="qwen3-vl", **QWEN3_VL_PIXELS)


# -- against the peers -----------------------------------------------------------------------


def test_monovlm_equals_rerankers_monovlmranker(
    tiny_monovlm_dir: Path, tiny_qwen2_vl_dir: Path, pages: list[Image.Image]
) -> None:
    expected = monovlm_reference(tiny_monovlm_dir, tiny_qwen2_vl_dir, QUERY, pages)
    ours = Reranker(str(tiny_monovlm_dir), backend="vlm", family="monovlm", normalize=True)
    assert _close(ours.score(QUERY, [Document(image=p) for p in pages]), expected, 1e-5)
    raw = Reranker(str(tiny_monovlm_dir), backend="vlm", family="monovlm")
    logits = raw.score(QUERY, [Document(image=p) for p in pages])
    assert _close(logits, [math.log(p / (1 - p)) for p in expected], 1e-4)


def test_monovlm_legacy_adapter_names_are_applied(
    tiny_monovlm_legacy_dir: Path,
    tiny_monovlm_dir: Path,
    tiny_qwen2_vl_dir: Path,
    pages: list[Image.Image],
) -> None:
    """An adapter saved under the old weight names (as in 2024) changes the scores too."""
    docs = [Document(image=p) for p in pages]
    legacy = Reranker(str(tiny_monovlm_legacy_dir), backend="vlm", family="monovlm").score(
        QUERY, docs
    )
    current = Reranker(str(tiny_monovlm_dir), backend="vlm", family="monovlm").score(QUERY, docs)
    bare = Reranker(str(tiny_qwen2_vl_dir), backend="vlm", family="monovlm").score(QUERY, docs)
    assert _close(legacy, current, 1e-5)
    assert max(abs(a - b) for a, b in zip(legacy, bare, strict=True)) > 0.05


def test_qwen3_vl_equals_sentence_transformers(
    tiny_qwen3_vl_dir: Path, qwen3_vl: Reranker, pages: list[Image.Image]
) -> None:
    mixed_reference = [
        *pages[:3],
        "Revenue grew in every region.",
        {"image": pages[3], "text": "Figure 2: revenue by region"},
    ]
    mixed = [
        *(Document(image=p) for p in pages[:3]),
        Document(text="Revenue grew in every region."),
        Document(image=pages[3], text="Figure 2: revenue by region"),
    ]
    expected = st_qwen3_vl_reference(tiny_qwen3_vl_dir, QUERY, mixed_reference)
    assert _close(qwen3_vl.score(QUERY, mixed), expected, 1e-5)


def test_qwen3_vl_instruction_equals_sentence_transformers_prompt(
    tiny_qwen3_vl_dir: Path, pages: list[Image.Image]
) -> None:
    instruction = "Find slides that answer the financial question"
    expected = st_qwen3_vl_reference(tiny_qwen3_vl_dir, QUERY, pages[:3], instruction)
    ours = Reranker(
        str(tiny_qwen3_vl_dir),
        backend="vlm",
        family="qwen3-vl",
        instruction=instruction,
        **QWEN3_VL_PIXELS,
    )
    scores = ours.score(QUERY, [Document(image=p) for p in pages[:3]])
    assert _close(scores, expected, 1e-5)
    default = st_qwen3_vl_reference(tiny_qwen3_vl_dir, QUERY, pages[:3])
    assert not _close(scores, default, 1e-4)  # the instruction is part of the prompt


def test_jina_m0_equals_its_published_head_formula(
    tiny_jina_m0_dir: Path, pages: list[Image.Image]
) -> None:
    expected = jina_m0_reference(tiny_jina_m0_dir, QUERY, pages, max_pixels=602112, min_pixels=3136)
    ours = Reranker(str(tiny_jina_m0_dir), backend="vlm", normalize=True)  # inferred: jina-m0
    assert ours.backend.pipeline.family.name == "jina-m0"
    assert _close(ours.score(QUERY, [Document(image=p) for p in pages]), expected, 1e-5)
    assert max(expected) - min(expected) > 1e-2  # the reference discriminates between pages


def test_jina_m0_without_its_score_head_is_refused(tiny_jina_m0_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    headless = tmp_path / "jina-reranker-m0-headless"
    shutil.copytree(tiny_jina_m0_dir, headless)
    weights = load_file(str(headless / "model.safetensors"))
    save_file(
        {k: v for k, v in weights.items() if not k.startswith("score.")},
        str(headless / "model.safetensors"),
        metadata={"format": "pt"},
    )
    with pytest.raises(ConfigurationError, match="no trained score head"):
        Reranker(str(headless), backend="vlm", family="jina-m0")


def test_missing_weights_are_refused_not_initialised(
    tiny_qwen2_vl_dir: Path, tmp_path: Path
) -> None:
    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    shutil.copytree(tiny_qwen2_vl_dir, broken)
    weights = load_file(str(broken / "model.safetensors"))
    save_file(
        {k: v for k, v in weights.items() if "layers.1." not in k},
        str(broken / "model.safetensors"),
        metadata={"format": "pt"},
    )
    with pytest.raises(ConfigurationError, match="randomly"):
        Reranker(str(broken), backend="vlm", family="monovlm")


# -- scores do not depend on batches, forms or resizing ------------------------------------


def test_batch_one_equals_batch_eight(tiny_qwen3_vl_dir: Path, pages: list[Image.Image]) -> None:
    docs = [
        *(Document(image=p) for p in pages),
        Document(text="Revenue grew in every region."),
        Document(image=pages[1], text="caption"),
    ]
    requests = [(QUERY, docs), ("a tall chart", docs[::-1])]
    one = Reranker(str(tiny_qwen3_vl_dir), backend="vlm", family="qwen3-vl", batch_size=1)
    eight = Reranker(str(tiny_qwen3_vl_dir), backend="vlm", family="qwen3-vl", batch_size=8)
    for a, b in zip(one.score_many(requests), eight.score_many(requests), strict=True):
        assert _close(a, b, 1e-5)


def test_path_bytes_pil_base64_and_data_uri_score_the_same(
    monovlm: Reranker, pages: list[Image.Image], page_paths: list[Path]
) -> None:
    page, path = pages[1], page_paths[1]
    data = path.read_bytes()
    encoded = base64.b64encode(data).decode()
    forms = [
        str(path),
        path,
        data,
        Image.open(path),
        encoded,
        f"data:image/png;base64,{encoded}",
    ]
    scores = monovlm.score(QUERY, [Document(image=form) for form in forms])
    assert _close(scores, [scores[0]] * len(forms), 1e-6)
    assert _close(monovlm.score(QUERY, [Document(image=page)]), scores[:1], 1e-6)


def test_an_image_over_max_pixels_is_resized_like_the_processor_not_cropped(
    monovlm: Reranker, pages: list[Image.Image]
) -> None:
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    large = pages[2]  # 420 x 600, over max_pixels
    assert large.width * large.height > QWEN2_VL_MAX_PIXELS
    height, width = smart_resize(
        large.height, large.width, factor=28, min_pixels=28 * 28 * 4, max_pixels=QWEN2_VL_MAX_PIXELS
    )
    assert height * width <= QWEN2_VL_MAX_PIXELS
    assert abs(width / height - large.width / large.height) < 0.1  # aspect kept: not cropped
    shrunk = large.resize((width, height), Image.Resampling.BICUBIC)
    scores = monovlm.score(QUERY, [Document(image=large), Document(image=shrunk)])
    assert _close(scores[:1], scores[1:], 1e-5)
    tokens = monovlm.backend.pipeline._image_tokens(large.size)
    assert tokens == (height // 14) * (width // 14) // 4


def test_max_pixels_changes_the_image_tokens(
    tiny_monovlm_dir: Path, pages: list[Image.Image]
) -> None:
    small = Reranker(str(tiny_monovlm_dir), backend="vlm", family="monovlm", max_pixels=28 * 28 * 8)
    assert small.backend.pipeline._image_tokens(pages[2].size) <= 8
    scores = small.score(QUERY, [Document(image=p) for p in pages])
    assert all(math.isfinite(s) for s in scores)


def test_an_image_is_decoded_once_per_batch(
    monovlm: Reranker, page_paths: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from rerankit.pipelines import vision_language

    calls: list[object] = []
    real = vision_language.read_image

    def counting(source: object, policy: object) -> Image.Image:
        calls.append(source)
        return real(source, policy)  # type: ignore[arg-type]

    monkeypatch.setattr(vision_language, "read_image", counting)
    docs = [Document(image=str(page_paths[0])), Document(image=str(page_paths[0]), id="again")]
    scores = monovlm.score(QUERY, docs)
    assert scores[0] == pytest.approx(scores[1], abs=1e-6)
    assert len(calls) == 1


def test_documents_are_read_lazily() -> None:
    doc = Document(image="/no/such/page.png", text="caption")  # nothing is opened yet
    assert doc.image == "/no/such/page.png"
    assert "page.png" in repr(doc)


def test_reprs_never_hold_image_payloads(pages: list[Image.Image]) -> None:
    payload = base64.b64encode(_png(pages[0])).decode()
    assert payload not in repr(Document(image=payload))
    assert payload[:40] not in repr(Document(image=f"data:image/png;base64,{payload}"))


# -- typed errors ----------------------------------------------------------------------------


def test_monovlm_refuses_text_documents_naming_the_family(monovlm: Reranker) -> None:
    with pytest.raises(InvalidInputError, match=r"'monovlm' family .* image documents only"):
        monovlm.score(QUERY, [Document(text="plain text")])


def test_text_backends_refuse_image_documents(
    tiny_bert_dir: Path, pages: list[Image.Image]
) -> None:
    text_only = Reranker(str(tiny_bert_dir), backend="cross-encoder")
    with pytest.raises(InvalidInputError, match=r"documents\[1\] is an image document"):
        text_only.rank(QUERY, ["text", Document(image=pages[0])])


@pytest.mark.parametrize(
    ("image", "message"),
    [
        ("/no/such/page.png", "not an existing file"),
        (b"not an image", "not an image file"),
        ("data:image/png;base64,!!!", "not valid base64"),
        ("https://example.invalid/page.png", "fetching images is off"),
        (12, "must be a file path"),
        ("", "is empty"),
    ],
)
def test_bad_images_get_typed_errors(monovlm: Reranker, image: object, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        monovlm.score(QUERY, [Document(image=image)])  # type: ignore[arg-type]


def test_a_corrupt_image_among_good_ones_names_itself(
    monovlm: Reranker, pages: list[Image.Image]
) -> None:
    docs = [Document(image=pages[0]), Document(image=_png(pages[1])[:60])]
    with pytest.raises(InvalidInputError, match="could not be decoded"):
        monovlm.score(QUERY, docs)


def test_max_image_bytes_bounds_every_image(
    tiny_monovlm_dir: Path, pages: list[Image.Image]
) -> None:
    strict = Reranker(str(tiny_monovlm_dir), backend="vlm", family="monovlm", max_image_bytes=100)
    with pytest.raises(InvalidInputError, match="over the 100-byte limit"):
        strict.score(QUERY, [Document(image=_png(pages[0]))])


class _Pages(BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        if self.path == "/slow.png":
            threading.Event().wait(2)
        self.send_response(200 if self.path != "/missing.png" else 404)
        self.send_header("Content-Type", "image/png")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def page_server(pages: list[Image.Image]) -> Iterator[str]:
    _Pages.body = _png(pages[1])
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Pages)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_urls_are_fetched_only_when_allowed(
    tiny_monovlm_dir: Path, monovlm: Reranker, page_server: str, pages: list[Image.Image]
) -> None:
    url = f"{page_server}/page.png"
    with pytest.raises(InvalidInputError, match="fetch_images=True"):
        monovlm.score(QUERY, [Document(image=url)])
    fetching = Reranker(
        str(tiny_monovlm_dir), backend="vlm", family="monovlm", fetch_images=True, image_timeout=0.5
    )
    fetched = fetching.score(QUERY, [Document(image=url)])
    assert _close(fetched, monovlm.score(QUERY, [Document(image=pages[1])]), 1e-6)
    with pytest.raises(InvalidInputError, match="could not be fetched"):
        fetching.score(QUERY, [Document(image=f"{page_server}/missing.png")])
    with pytest.raises(InvalidInputError, match="could not be fetched"):
        fetching.score(QUERY, [Document(image=f"{page_server}/slow.png")])


def test_image_passages_carry_the_documents_text(
    monovlm: Reranker, pages: list[Image.Image]
) -> None:
    seen: list[object] = []
    pipeline = monovlm.backend.pipeline
    original = pipeline.score_many

    def spy(requests: list[tuple[str, list[object]]]) -> object:
        seen.extend(requests[0][1])
        return original(requests)  # type: ignore[arg-type]

    pipeline.score_many = spy  # type: ignore[method-assign]
    try:
        monovlm.score(QUERY, [Document(image=pages[0], text="OCR: revenue")])
    finally:
        del pipeline.score_many
    assert seen == [ImagePassage(pages[0], "OCR: revenue")]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_batches_agree_and_bfloat16_keeps_the_ranking(
    tiny_qwen3_vl_dir: Path, pages: list[Image.Image]
) -> None:
    """On CUDA, left-padded mixed batches score as single rows; bf16 is the default there."""
    docs = [*(Document(image=p) for p in pages), Document(text="Revenue grew in every region.")]
    settings = {"backend": "vlm", "family": "qwen3-vl", **QWEN3_VL_PIXELS}
    cpu = Reranker(str(tiny_qwen3_vl_dir), device="cpu", **settings).score(QUERY, docs)
    one = Reranker(str(tiny_qwen3_vl_dir), device="cuda", dtype="float32", batch_size=1, **settings)
    many = Reranker(
        str(tiny_qwen3_vl_dir), device="cuda", dtype="float32", batch_size=8, **settings
    )
    assert _close(many.score(QUERY, docs), one.score(QUERY, docs), 1e-4)
    assert _close(many.score(QUERY, docs), cpu, 1e-4)
    default = Reranker(str(tiny_qwen3_vl_dir), device="cuda", **settings)
    assert default.backend.pipeline.dtype == torch.bfloat16
    assert max(abs(a - b) for a, b in zip(default.score(QUERY, docs), cpu, strict=True)) < 0.1


def test_the_references_tell_a_wrong_prompt_from_the_right_one(
    tiny_monovlm_dir: Path,
    tiny_qwen2_vl_dir: Path,
    tiny_jina_m0_dir: Path,
    pages: list[Image.Image],
) -> None:
    """A prompt one piece off (no system turn; query before document) misses each reference."""
    from dataclasses import replace

    docs = [Document(image=p) for p in pages]
    mono = Reranker(str(tiny_monovlm_dir), backend="vlm", family="monovlm", normalize=True)
    family = mono.backend.pipeline.family
    mono.backend.pipeline.family = replace(family, prompt=family.prompt.split("\n", 2)[2])
    expected = monovlm_reference(tiny_monovlm_dir, tiny_qwen2_vl_dir, QUERY, pages)
    assert not _close(mono.score(QUERY, docs), expected, 1e-3)
    jina = Reranker(str(tiny_jina_m0_dir), backend="vlm", normalize=True)
    family = jina.backend.pipeline.family
    jina.backend.pipeline.family = replace(family, prompt="**Query**:\n{query}\n{document}")
    expected = jina_m0_reference(tiny_jina_m0_dir, QUERY, pages, max_pixels=602112, min_pixels=3136)
    assert not _close(jina.score(QUERY, docs), expected, 1e-3)
