"""Import hygiene, missing extras and the installed wheel, each checked in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[2]
HEAVY = [
    "torch",
    "transformers",
    "onnxruntime",
    "langchain_core",
    "llama_index",
    "haystack",
    "httpx",
]


def _python(code: str, python: str = sys.executable) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [python, "-c", code], capture_output=True, text=True, timeout=300, cwd="/"
    )


def test_import_rerankit_loads_no_model_library() -> None:
    code = (
        "import sys, json, rerankit, rerankit.integrations\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    run = _python(code)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == []


def test_missing_extra_names_the_pip_command(tiny_bert_dir: Path) -> None:
    code = (
        "import sys\n"
        "sys.modules['torch'] = None  # hide the extra, as on a machine without it\n"
        "from rerankit import Reranker, MissingDependencyError\n"
        "try:\n"
        f"    Reranker({str(tiny_bert_dir)!r})\n"
        "except MissingDependencyError as exc:\n"
        "    print(type(exc).__name__, '|', exc)\n"
    )
    run = _python(code)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("MissingDependencyError |")
    assert 'pip install "rerankit[transformers]"' in run.stdout
    assert "'torch'" in run.stdout


def test_info_lists_backends_and_missing_extras() -> None:
    code = (
        "import sys\n"
        "sys.modules['haystack'] = None\n"
        "from rerankit.cli import main\n"
        "main(['info'])\n"
    )
    run = _python(code)
    assert run.returncode == 0, run.stderr
    assert "cross-encoder  available" in run.stdout
    assert 'haystack       missing haystack: pip install "rerankit[haystack]"' in run.stdout
    assert "devices: cpu" in run.stdout


@pytest.mark.slow
def test_built_wheel_installs_and_imports_in_a_fresh_venv(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(dist),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = dist.glob("rerankit-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = str(env_dir / "bin" / "python")
    install = subprocess.run(
        [python, "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr
    run = _python(
        "import rerankit, rerankit.integrations\n"
        "from rerankit import Reranker, Document, RerankerConfig, MissingDependencyError\n"
        "print(rerankit.__version__, rerankit.__file__, rerankit.integrations.__file__)\n"
        "try:\n"
        "    Reranker('BAAI/bge-reranker-v2-m3')\n"
        "except MissingDependencyError as exc:\n"
        "    print('missing:', exc.extra)\n",
        python,
    )
    assert run.returncode == 0, run.stderr
    first_line, missing = run.stdout.splitlines()
    version, package_file, integrations_file = first_line.split()
    assert version == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert str(env_dir) in package_file
    assert integrations_file.endswith("rerankit/integrations/__init__.py")
    assert missing == "missing: transformers"
