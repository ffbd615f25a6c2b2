"""Each path of the listwise backend names its own extra; each checked in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd="/"
    )


def test_the_backend_module_loads_neither_torch_nor_httpx() -> None:
    code = (
        "import sys, json, rerankit.backends.listwise\n"
        "heavy = ['torch', 'transformers', 'httpx', 'tenacity']\n"
        "print(json.dumps([m for m in heavy if m in sys.modules]))"
    )
    run = _python(code)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == []


@pytest.mark.parametrize(
    ("hidden", "settings", "extra"),
    [
        ("httpx", "backend='listwise', base_url='http://127.0.0.1:9'", "jina"),
        ("tenacity", "backend='listwise', base_url='http://127.0.0.1:9'", "jina"),
        ("torch", "backend='listwise'", "transformers"),
    ],
)
def test_a_missing_extra_names_the_pip_command(hidden: str, settings: str, extra: str) -> None:
    code = (
        f"import sys\nsys.modules[{hidden!r}] = None\n"
        "from rerankit import Reranker, MissingDependencyError\n"
        "try:\n"
        f"    Reranker('rank-zephyr', {settings})\n"
        "except MissingDependencyError as exc:\n"
        "    print(type(exc).__name__, '|', exc)\n"
    )
    run = _python(code)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("MissingDependencyError |")
    assert f'pip install "rerankit[{extra}]"' in run.stdout
    assert f"'{hidden}'" in run.stdout


def test_info_lists_its_options_without_either_extra() -> None:
    code = (
        "import sys\n"
        "for name in ('torch', 'httpx'):\n"
        "    sys.modules[name] = None\n"
        "from rerankit.cli import main\n"
        "main(['info'])\n"
    )
    run = _python(code)
    assert run.returncode == 0, run.stderr
    assert "listwise       available" in run.stdout
    assert "window_size" in run.stdout
    assert "server only: calls in flight" in run.stdout
