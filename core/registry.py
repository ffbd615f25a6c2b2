"""Backend registry: names -> import paths and extras, and inference of a backend from a model.

Order of choice: an explicit ``backend=`` always wins; else what a local model folder holds;
else patterns in the model name; else :class:`UnknownBackendError` listing the valid names.
Only the chosen backend's module is imported.

What can leave the machine: inference never picks a remote backend for a local folder or a hub
id (``org/name``): those run here. Only a bare service model name (``jina-reranker-v2-base-
multilingual``, no ``org/``) is inferred as the Jina API; ``backend="jina"`` says so explicitly.
RankZephyr / RankVicuna names infer the ``listwise`` backend with a local model; sending
documents to a chat server takes ``backend="listwise"`` and ``base_url=`` both.

Out-of-tree backends register under the entry-point group ``rerankit.backends``
(``name = "package.module:BackendClass"``) and are named like built-in ones.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import logging
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from rerankit._optional import require
from rerankit.errors import ConfigurationError, UnknownBackendError

if TYPE_CHECKING:
    from rerankit.backends.base import Backend

logger = logging.getLogger("rerankit")
ENTRY_POINT_GROUP = "rerankit.backends"


@dataclass(frozen=True, slots=True)
class BackendSpec:
    """Where a backend lives and which extra installs what it needs."""

    name: str
    module: str
    attribute: str
    extra: str
    requires: tuple[str, ...]
    aliases: tuple[str, ...] = ()
    plugin: str | None = None  # the distribution that registered it, for out-of-tree backends


BACKENDS: dict[str, BackendSpec] = {
    spec.name: spec
    for spec in (
        BackendSpec(
            name="cross-encoder",
            module="rerankit.backends.cross_encoder",
            attribute="CrossEncoderBackend",
            extra="transformers",
            requires=("torch", "transformers"),
            aliases=("cross_encoder", "crossencoder", "transformers"),
        ),
        BackendSpec(
            name="llm",
            module="rerankit.backends.llm",
            attribute="LLMBackend",
            extra="transformers",
            requires=("torch", "transformers"),
            aliases=("causal-lm", "causal_lm"),
        ),
        BackendSpec(
            name="t5",
            module="rerankit.backends.t5",
            attribute="T5Backend",
            extra="transformers",
            requires=("torch", "transformers"),
            aliases=("monot5", "seq2seq"),
        ),
        BackendSpec(
            name="colbert",
            module="rerankit.backends.colbert",
            attribute="ColBERTBackend",
            extra="colbert",
            requires=("torch", "transformers"),
            aliases=("late-interaction", "maxsim"),
        ),
        BackendSpec(
            name="flashrank",
            module="rerankit.backends.flashrank",
            attribute="FlashRankBackend",
            extra="flashrank",
            requires=("onnxruntime", "tokenizers", "numpy"),
            aliases=("onnx",),
        ),
        BackendSpec(
            name="vlm",
            module="rerankit.backends.vlm",
            attribute="VLMBackend",
            extra="vlm",
            requires=("torch", "transformers", "PIL"),
            aliases=("vision", "multimodal", "monovlm"),
        ),
        BackendSpec(  # the model on a server (extra "jina") or here ("transformers"): the
            # backend checks the extra of the path chosen by base_url, so requires is empty
            name="listwise",
            module="rerankit.backends.listwise",
            attribute="ListwiseBackend",
            extra="transformers",
            requires=(),
            aliases=("rankgpt", "rankllm", "rank-llm"),
        ),
        BackendSpec(
            name="jina",
            module="rerankit.backends.jina",
            attribute="JinaBackend",
            extra="jina",
            requires=("httpx", "tenacity"),
            aliases=("api", "remote", "http"),
        ),
    )
}

# FlashRank's published folders and the ONNX file each holds (as in flashrank.Config).
FLASHRANK_FILES = {
    "ms-marco-TinyBERT-L-2-v2": "flashrank-TinyBERT-L-2-v2.onnx",
    "ms-marco-MiniLM-L-12-v2": "flashrank-MiniLM-L-12-v2_Q.onnx",
    "ms-marco-MultiBERT-L-12": "flashrank-MultiBERT-L12_Q.onnx",
    "ce-esci-MiniLM-L12-v2": "flashrank-ce-esci-MiniLM-L12-v2_Q.onnx",
    "miniReranker_arabic_v1": "miniReranker_arabic_v1.onnx",
}

# Generative model kinds, which must never fall back to the cross-encoder (loaded as a
# classifier they get a random head); each has a backend.
GENERATIVE_KINDS = {
    "llm": "a causal-LM reranker (scored by the logits of answer tokens such as 'yes'/'no')",
    "t5": "a T5 reranker (scored by one decoder step over 'true'/'false')",
    "vlm": "a vision-language reranker (images in the prompt)",
    "listwise": "a listwise LLM reranker (it reorders windows of documents by generating ids)",
}

# Checked in order against the lower-cased name; the first match names the backend.
NAME_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"colbert"), "colbert"),
    (re.compile(r"seq-cls"), "cross-encoder"),  # a classifier conversion of an LLM reranker
    (re.compile(r"jina-reranker-m0|qwen[\d.]*-vl-rerank|monoqwen2-vl"), "vlm"),
    (
        re.compile(
            r"qwen3-reranker|bge-reranker-v2-gemma|bge-reranker-v2-minicpm-layerwise"
            r"|bge-reranker-v2\.5-gemma2-lightweight|mxbai-rerank-(base|large)-v2"
        ),
        "llm",
    ),
    (re.compile(r"rank[-_]?(zephyr|vicuna)"), "listwise"),
    (re.compile(r"mono-?t5|mt5-.*(msmarco|mmarco|rerank)|inranker"), "t5"),
    (re.compile(r"jina-reranker"), "jina"),  # only a bare API name stays remote: see below
    (re.compile(r"bge-reranker|ms-marco|mxbai-rerank|cross-encoder|reranker"), "cross-encoder"),
)


def available() -> dict[str, BackendSpec]:
    """Built-in backends and the ones installed packages register as entry points."""
    return {**BACKENDS, **_plugins()}


def canonical_name(name: str) -> str:
    """The registered name for ``name`` or one of its aliases."""
    key = name.strip().lower()
    specs = available()
    for spec in specs.values():
        if key == spec.name or key in spec.aliases:
            return spec.name
    raise UnknownBackendError(
        f"unknown backend {name!r}; valid backends are {sorted(specs)} "
        f"(aliases: {sorted(a for s in specs.values() for a in s.aliases)})"
    )


def infer_backend(model: str) -> str:
    """Pick a backend for ``model`` from its local folder, else from its name."""
    guess = _guess(model)  # always a built-in backend: plugins are never chosen by inference
    if guess is None:
        raise UnknownBackendError(
            f"cannot tell which backend serves {model!r}; pass backend= one of "
            f"{sorted(available())}"
        )
    return guess


def generative_kind(model: str) -> str | None:
    """A :data:`GENERATIVE_KINDS` key when ``model`` (folder or name) is a generative reranker."""
    guess = _guess(model)
    return guess if guess in GENERATIVE_KINDS else None


def load_backend_class(name: str) -> type[Backend]:
    """Import and return the backend class registered as ``name`` (or an alias)."""
    from rerankit.backends.base import Backend

    spec = available()[canonical_name(name)]
    for module in spec.requires:
        require(module, extra=spec.extra, purpose=f"The {spec.name!r} backend")
    try:
        loaded: object = importlib.import_module(spec.module)
        for part in spec.attribute.split("."):
            loaded = getattr(loaded, part)
    except Exception as exc:  # a plugin's import may raise anything; name the plugin
        if spec.plugin is None:
            raise
        raise ConfigurationError(
            f"the {spec.name!r} backend of {spec.plugin!r} cannot be loaded from "
            f"{spec.module}:{spec.attribute}: {type(exc).__name__}: {exc}"
        ) from exc
    if not (isinstance(loaded, type) and issubclass(loaded, Backend)):
        raise ConfigurationError(
            f"{spec.module}:{spec.attribute} (backend {spec.name!r}) is not a "
            "rerankit.backends.base.Backend subclass"
        )
    if not isinstance(getattr(loaded, "name", None), str):
        raise ConfigurationError(
            f"{spec.module}:{spec.attribute} (backend {spec.name!r}) sets no class attribute "
            "name: str"
        )
    return loaded


@cache
def _plugins() -> dict[str, BackendSpec]:
    found: dict[str, BackendSpec] = {}
    taken = {n for spec in BACKENDS.values() for n in (spec.name, *spec.aliases)}
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        name = entry.name.strip().lower()
        module, _, attribute = entry.value.partition(":")
        owner = entry.dist.name if entry.dist is not None else "an installed package"
        problem = _plugin_problem(name, attribute, taken, found)
        if problem is not None:
            logger.warning("ignoring the %r backend of %s: %s", name, owner, problem)
            continue
        found[name] = BackendSpec(
            name=name,
            module=module.strip(),
            attribute=attribute.strip(),
            extra="",
            requires=(),
            plugin=owner,
        )
    return found


def _plugin_problem(
    name: str, attribute: str, taken: set[str], found: dict[str, BackendSpec]
) -> str | None:
    """Why an entry point cannot be registered under ``name``, or None when it can."""
    if name in taken:
        return "the name is a built-in backend's"
    if name in found:
        return f"{found[name].plugin} registers that name too"
    if not attribute:
        return "no ':Class' in the entry point"
    return None


# The only names inferred as a remote service: a bare Jina API model name, nothing around it.
API_MODEL_NAME = re.compile(r"jina-reranker-(v|m)\d+(-[a-z0-9]+)*")


def _guess(model: str) -> str | None:
    """What ``model``'s local folder says it is, else what its name says (None: no clue)."""
    folder = Path(model).expanduser()
    return _infer_from_folder(folder) if folder.is_dir() else _infer_from_name(model)


def _infer_from_name(model: str) -> str | None:
    name = model.strip().lower()
    if name in {known.lower() for known in FLASHRANK_FILES}:
        return "flashrank"
    for pattern, backend in NAME_PATTERNS:
        if pattern.search(name):
            if backend == "vlm" and _is_api_name(model):  # jina-reranker-m0 on Jina's API
                return "jina"
            return _local_unless_api_name(model) if backend == "jina" else backend
    return None


def _local_unless_api_name(model: str) -> str:
    """``jina`` for a bare API model name; a hub id, path or file name runs here instead."""
    return "jina" if _is_api_name(model) else "cross-encoder"


def _is_api_name(model: str) -> bool:
    bare = API_MODEL_NAME.fullmatch(model.lower()) is not None
    return bare and not Path(model).expanduser().exists()


def _infer_from_folder(folder: Path) -> str | None:
    if any(folder.glob("*.onnx")) or any(folder.glob("onnx/*.onnx")):
        return "flashrank"
    if (folder / "artifact.metadata").exists() or _has_dense_module(folder):
        return "colbert"
    architectures = _architectures(folder)
    if any("colbert" in arch.lower() for arch in architectures):
        return "colbert"
    if any(arch.endswith("ForSequenceClassification") for arch in architectures):
        return "cross-encoder"
    if any(arch.endswith("ForCausalLM") for arch in architectures):
        # RankZephyr and RankVicuna are causal LMs too; their names say they order lists (the
        # whole path: a checkpoint-100/ or an HF-cache snapshots/<sha>/ folder says nothing).
        named = (_infer_from_name(part) for part in (folder.name, str(folder.resolve())))
        return "listwise" if "listwise" in named else "llm"
    if any(re.match(r"M?T5ForConditionalGeneration$", arch) for arch in architectures):
        return "t5"
    if any(arch.endswith(("ForConditionalGeneration", "VLForRanking")) for arch in architectures):
        return "vlm"
    if not architectures and (folder / "adapter_config.json").is_file():
        base = _adapter_base(folder)  # a LoRA adapter (MonoQwen2-VL): what its base model is
        guess = None if base is None else _guess(base)
        if guess is not None:
            return guess
    guess = _infer_from_name(folder.name)
    return "cross-encoder" if guess == "jina" else guess  # a folder runs here, never remote


def _architectures(folder: Path) -> list[str]:
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    architectures = config.get("architectures") if isinstance(config, dict) else None
    return [a for a in architectures or [] if isinstance(a, str)]


def _adapter_base(folder: Path) -> str | None:
    try:
        config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    base = config.get("base_model_name_or_path") if isinstance(config, dict) else None
    return base if isinstance(base, str) and base else None


def _has_dense_module(folder: Path) -> bool:
    """A sentence-transformers / PyLate folder whose modules include a Dense projection."""
    try:
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(modules, list) and any(
        isinstance(m, dict) and str(m.get("type", "")).endswith("Dense") for m in modules
    )
