"""Fixtures of the VLM tests: tiny Qwen2-VL / MonoQwen2-VL / Qwen3-VL checkpoints and pages."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image

from tests import vlm_factory


@pytest.fixture(scope="session")
def tiny_qwen2_vl_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen2-VL (Qwen2-VL-2B-Instruct's layout) with tokenizer and processor."""
    return vlm_factory.tiny_qwen2_vl(tmp_path_factory.mktemp("tiny-qwen2-vl"))


@pytest.fixture(scope="session")
def tiny_monovlm_dir(tmp_path_factory: pytest.TempPathFactory, tiny_qwen2_vl_dir: Path) -> Path:
    """A LoRA adapter over ``tiny_qwen2_vl_dir`` (MonoQwen2-VL-v0.1's layout, no processor)."""
    out = tmp_path_factory.mktemp("tiny-monovlm")
    return vlm_factory.tiny_monovlm_adapter(tiny_qwen2_vl_dir, out)


@pytest.fixture(scope="session")
def tiny_monovlm_legacy_dir(
    tmp_path_factory: pytest.TempPathFactory, tiny_qwen2_vl_dir: Path
) -> Path:
    """The same adapter weights saved under transformers < 4.52's names (``model.layers.*``)."""
    out = tmp_path_factory.mktemp("tiny-monovlm-legacy")
    return vlm_factory.tiny_monovlm_adapter(tiny_qwen2_vl_dir, out, legacy_keys=True)


@pytest.fixture(scope="session")
def tiny_qwen3_vl_plain_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen3-VL (Qwen3-VL-Reranker's architecture), transformers files only."""
    return vlm_factory.tiny_qwen3_vl(tmp_path_factory.mktemp("tiny-qwen3-vl-plain"))


@pytest.fixture(scope="session")
def tiny_qwen3_vl_dir(
    tmp_path_factory: pytest.TempPathFactory, tiny_qwen3_vl_plain_dir: Path
) -> Path:
    """The same weights plus Qwen3-VL-Reranker's sentence-transformers files (CrossEncoder)."""
    out = tmp_path_factory.mktemp("tiny-qwen3-vl") / "model"
    shutil.copytree(tiny_qwen3_vl_plain_dir, out)
    return vlm_factory.as_sentence_transformers_reranker(out)


@pytest.fixture(scope="session")
def pages() -> list[Image.Image]:
    """Six distinct page screenshots: small, ordinary, over max_pixels, wide, tall, tiny."""
    return vlm_factory.pages()


@pytest.fixture(scope="session")
def page_paths(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """``pages`` saved as PNG files, in the same order."""
    return vlm_factory.save_pages(tmp_path_factory.mktemp("pages"))


@pytest.fixture(scope="session")
def tiny_jina_m0_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random jina-reranker-m0 (its published architecture, legacy weight names)."""
    return vlm_factory.tiny_jina_m0(tmp_path_factory.mktemp("tiny-jina-m0") / "model")
