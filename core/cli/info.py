"""``rerankit info``: version, backends and their options, framework extras, torch devices."""

from __future__ import annotations

import argparse
from typing import Any

import rerankit
from rerankit._optional import is_available
from rerankit.config import FIELDS
from rerankit.options import OptionSchema
from rerankit.registry import BackendSpec, available, load_backend_class

# Framework adapters and tools: (extra, importable module that it needs).
FRAMEWORKS = (
    ("langchain", "langchain_core"),
    ("llama-index", "llama_index.core"),
    ("haystack", "haystack"),
)
TOOLS = (("eval", "bm25s"), ("serve", "fastapi"), ("ray", "ray"))

OPTIONS_USAGE = (
    "Options are keyword arguments (Reranker(model, cache_size=1000)), config-file keys, or\n"
    "KEY=VALUE text on the command line (rerankit eval --reranker, rerankit serve --option),\n"
    "parsed by type: trust_remote_code=false, batch_size=64,\n"
    "providers='[\"CPUExecutionProvider\"]' (a list is JSON text)."
)
INFERENCE_RULE = (
    "Which backend runs a model: backend= wins; else what a local folder holds (an .onnx file,\n"
    "ColBERT or PyLate files, config.json architectures); else patterns in the name. A local\n"
    "folder or an org/name hub id always runs on this machine and is never sent to a remote\n"
    "backend; only a bare service model name (e.g. jina-reranker-v2-base-multilingual) is\n"
    "inferred as the Jina API. A chat server (listwise, base_url=) is used only with\n"
    "backend=listwise named."
)


def register(commands: Any) -> None:
    """Add the ``info`` sub-command."""
    parser = commands.add_parser("info", help="show version, available backends and devices")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print the report."""
    print(report())
    return 0


def report() -> str:
    """The text ``rerankit info`` prints."""
    lines = [f"rerankit {rerankit.__version__}", "", "backends and their options:"]
    for spec in available().values():
        lines += _backend(spec)
    lines += ["", "config fields (every backend):", *_options(FIELDS)]
    lines += ["", OPTIONS_USAGE, "", INFERENCE_RULE]
    lines += ["", "framework adapters:"]
    for extra, module in FRAMEWORKS:
        lines.append(_status(extra, extra, [] if is_available(module) else [module]))
    lines += ["", "tools (rerankit eval / bench, serve, Ray):"]
    for extra, module in TOOLS:
        lines.append(_status(extra, extra, [] if is_available(module) else [module]))
    lines += ["", f"devices: {', '.join(_devices())}"]
    return "\n".join(lines)


def _backend(spec: BackendSpec) -> list[str]:
    """The backend's status line, then its options (or what to install to get them)."""
    missing = [m for m in spec.requires if not is_available(m)]
    if missing:
        return [_status(spec.name, spec.extra, missing)]
    try:
        schema = load_backend_class(spec.name).options_schema
    except Exception as exc:  # a diagnostic: one broken module must not hide the others
        return [f"  {spec.name:<14} cannot be loaded: {type(exc).__name__}: {exc}"]
    source = "" if spec.plugin is None else f" (plugin from {spec.plugin})"
    return [f"  {spec.name:<14} available{source}", *_options(schema)]


def _options(schema: OptionSchema) -> list[str]:
    if not schema:
        return ["      (no options)"]
    width = max(len(name) for name in schema)
    return [
        f"      {name:<{width}}  {option.help} ({option.describe()})"
        for name, option in schema.items()
    ]


def _status(name: str, extra: str, missing: list[str]) -> str:
    if not missing:
        return f"  {name:<14} available"
    return f'  {name:<14} missing {", ".join(missing)}: pip install "rerankit[{extra}]"'


def _devices() -> list[str]:
    if not is_available("torch"):
        return ['none found (torch not installed: pip install "rerankit[transformers]")']
    import torch

    devices = ["cpu"]
    devices += [
        f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())
    ]
    if torch.backends.mps.is_available():
        devices.append("mps")
    return devices
