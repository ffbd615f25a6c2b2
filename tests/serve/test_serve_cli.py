"""The ``rerankit serve`` command itself: a config file with several models, and a graceful stop."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from rerankit import Reranker
from rerankit.cli import build_parser, main
from rerankit.cli.serve import model_configs


@contextmanager
def rerankit_serve(*arguments: str, log: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``rerankit serve ARGUMENTS`` in a subprocess on a free port, once it answers /health."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "rerankit.cli", "serve", *arguments, "--port", str(port)]
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                httpx.get(f"{url}/health", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"rerankit serve did not start:\n{log.read_text()}"
                    ) from None
                time.sleep(0.2)
        yield url, process
    finally:
        process.kill()
        process.wait(timeout=30)


@pytest.fixture
def server(tmp_path: Path, tiny_bert_dir: Path, tiny_bert_two_label_dir: Path) -> Iterator[str]:
    config = tmp_path / "models.yaml"
    config.write_text(
        "models:\n"
        f"  one-logit: {{model: {json.dumps(str(tiny_bert_dir))}, batch_size: 8}}\n"
        f"  two-logit: {{model: {json.dumps(str(tiny_bert_two_label_dir))}, device: cpu}}\n",
        encoding="utf-8",
    )
    with rerankit_serve("--config", str(config), log=tmp_path / "serve.log") as (url, _):
        yield url


def test_serves_every_model_of_a_config_file(
    server: str, tiny_bert_dir: Path, tiny_bert_two_label_dir: Path
) -> None:
    models = httpx.get(f"{server}/v1/models").json()["data"]
    assert [m["id"] for m in models] == ["one-logit", "two-logit"]
    docs = ["DNA repair proteins", "bread", "BRCA1 repairs DNA"]
    for name, folder in (("one-logit", tiny_bert_dir), ("two-logit", tiny_bert_two_label_dir)):
        body = {"model": name, "query": "DNA repair", "documents": docs}
        results = httpx.post(f"{server}/v1/rerank", json=body).json()["results"]
        want = Reranker(str(folder), device="cpu").rank("DNA repair", docs)
        assert [r["index"] for r in results] == want.indices
        assert [r["relevance_score"] for r in results] == pytest.approx(want.scores, abs=1e-5)
    default = httpx.post(f"{server}/v1/rerank", json={"query": "q", "documents": ["a"]})
    assert default.json()["model"] == "one-logit"


def test_sigterm_drains_the_request_in_flight(tmp_path: Path, tiny_bert_dir: Path) -> None:
    docs = [f"passage {i} about DNA repair and cell division " * 8 for i in range(1000)]
    body = {"query": "DNA repair", "documents": docs}
    answer: dict[str, httpx.Response] = {}
    with rerankit_serve("--model", str(tiny_bert_dir), log=tmp_path / "serve.log") as (
        url,
        process,
    ):
        sender = threading.Thread(
            target=lambda: answer.setdefault(
                "response", httpx.post(f"{url}/v1/rerank", json=body, timeout=120)
            )
        )
        sender.start()
        while not _queued(url):  # wait until the request is being scored
            assert sender.is_alive(), "answered before the stop was sent"
            time.sleep(0.01)
        process.send_signal(signal.SIGTERM)
        sender.join(timeout=120)
        assert process.wait(timeout=60) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal
    response = answer["response"]
    assert response.status_code == 200
    assert sorted(r["index"] for r in response.json()["results"]) == list(range(len(docs)))


def _queued(url: str) -> str:
    """The queue-depth line of /metrics when pairs are waiting or being scored, else ''."""
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith("rerankit_queue_pairs{") and float(line.split()[-1]) > 0:
            return line
    return ""


def test_configuration_mistakes_print_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "models.yaml"
    bad.write_text("foo: 1\n", encoding="utf-8")
    assert main(["serve", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"rerankit serve: ConfigurationError: {bad}: expected {{models: {{name: config}}}}, "
    )
    assert err.endswith("got the keys ['foo']\n")
    good = tmp_path / "good.yaml"
    good.write_text("models:\n  tiny: {model: m, backend: jina}\n", encoding="utf-8")
    assert main(["serve", "--config", str(good), "--model", "tiny", "--backend", "jina"]) == 2
    assert "two rerankers are named 'tiny'" in capsys.readouterr().err
    assert main(["serve", "--config", str(good), "--option", "batch_size=8"]) == 2
    assert "--option sets --model's options" in capsys.readouterr().err
    assert main(["serve"]) == 2
    assert "pass --model or --config" in capsys.readouterr().err
    assert main(["serve", "--model", "no-such-model"]) == 2
    assert "UnknownBackendError: cannot tell which backend" in capsys.readouterr().err
    assert main(["serve", "--model", "x", "--backend", "jina", "--max-queue-pairs", "0"]) == 2
    assert "max_queue_pairs must be a positive integer, got 0" in capsys.readouterr().err


def test_serve_reads_the_configs_eval_reads(tmp_path: Path, tiny_bert_dir: Path) -> None:
    """One loader: an eval file (rerankers: list, text values) serves as is, beside --model."""
    config = tmp_path / "rerankers.yaml"
    config.write_text(
        "rerankers:\n"
        f"  - {{name: tiny, model: {json.dumps(str(tiny_bert_dir))}, batch_size: '8'}}\n"
        f"  - {{model: {json.dumps(str(tiny_bert_dir))}, backend: cross-encoder}}\n",
        encoding="utf-8",
    )
    command = ["serve", "--config", str(config), "--model", "m", "--backend", "jina"]
    args = build_parser().parse_args([*command, "--option", "normalize=False"])
    configs = model_configs(args)
    assert list(configs) == ["tiny", f"cross-encoder:{tiny_bert_dir}", "m"]
    assert configs["tiny"].batch_size == 8
    assert configs["m"].backend == "jina"
    assert configs["m"].normalize is False
