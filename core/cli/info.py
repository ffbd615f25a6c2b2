"""``rerankit info``: version, importable backends and framework extras, torch devices."""

from __future__ import annotations

import argparse
from typing import Any

import rerankit
from rerankit._optional import is_available
from rerankit.registry import BACKENDS

# Framework adapters and tools: (extra, importable module that it needs).
FRAMEWORKS = (
    ("langchain", "langchain_core"),
    ("llama-index", "llama_index.core"),
    ("haystack", "haystack"),
)
TOOLS = (("eval", "bm25s"), ("serve", "fastapi"), ("ray", "ray"))


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
    lines = [f"rerankit {rerankit.__version__}", "", "backends:"]
    for spec in BACKENDS.values():
        missing = [m for m in spec.requires if not is_available(m)]
        lines.append(_status(spec.name, spec.extra, missing))
    lines += ["", "framework adapters:"]
    for extra, module in FRAMEWORKS:
        lines.append(_status(extra, extra, [] if is_available(module) else [module]))
    lines += ["", "tools (rerankit eval / bench, serve, Ray):"]
    for extra, module in TOOLS:
        lines.append(_status(extra, extra, [] if is_available(module) else [module]))
    lines += ["", f"devices: {', '.join(_devices())}"]
    return "\n".join(lines)


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
