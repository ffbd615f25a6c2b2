"""Ray Serve and Ray Data paths on a local Ray instance (never a remote cluster)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ray = pytest.importorskip("ray")

from rerankit import Reranker, RerankerConfig, Secret  # noqa: E402
from rerankit.ray import deployment, rerank_dataset  # noqa: E402

DOCS = ["DNA repair proteins", "bread", "", "BRCA1 repairs DNA", "bread"]


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    yield
    ray.shutdown()


def test_ray_data_reranks_every_row_in_order(local_ray: None, tiny_bert_dir: Path) -> None:
    config = RerankerConfig(model=str(tiny_bert_dir), device="cpu")
    rows = [
        {"qid": i, "query": f"query {i} on DNA", "candidates": DOCS[: 2 + i % 4]} for i in range(12)
    ]
    out = rerank_dataset(ray.data.from_items(rows), config, concurrency=2, batch_size=4).take_all()
    local = Reranker.from_config(config)
    assert [row["qid"] for row in out] == list(range(12))
    for row, source in zip(out, rows, strict=True):
        expected = local.score(source["query"], source["candidates"])
        assert list(row["scores"]) == pytest.approx(expected, abs=1e-4)
        assert sorted(row["ranking"]) == list(range(len(source["candidates"])))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_ray_serve_speaks_the_same_api(local_ray: None, tiny_bert_dir: Path) -> None:
    from ray import serve

    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        config = RerankerConfig(model=str(tiny_bert_dir), device="cpu")
        serve.run(deployment({"tiny": config}, num_replicas=1), route_prefix="/")
        remote = Reranker(
            "tiny",
            backend="jina",
            base_url=f"http://127.0.0.1:{port}",
            api_key=Secret.from_token("x"),
        )
        local = Reranker.from_config(config)
        got, want = remote.rank("DNA repair", DOCS), local.rank("DNA repair", DOCS)
        assert got.indices == want.indices
        assert got.scores == pytest.approx(want.scores, abs=1e-4)
    finally:
        serve.shutdown()


def test_ray_serve_deploys_the_config_file_serve_reads(
    local_ray: None, tiny_bert_dir: Path, tmp_path: Path
) -> None:
    from ray import serve

    config = tmp_path / "models.yaml"
    config.write_text(
        f"models:\n  tiny: {{model: {json.dumps(str(tiny_bert_dir))}, device: cpu, "
        "normalize: 'true'}\n"
    )
    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        serve.run(deployment(config, num_replicas=1), route_prefix="/")
        body = {"model": "tiny", "query": "DNA repair", "documents": DOCS}
        answer = httpx.post(f"http://127.0.0.1:{port}/v1/rerank", json=body, timeout=60)
        results = answer.json()["results"]
        want = Reranker(str(tiny_bert_dir), device="cpu", normalize=True).rank("DNA repair", DOCS)
        assert [r["index"] for r in results] == want.indices
        assert [r["relevance_score"] for r in results] == pytest.approx(want.scores, abs=1e-4)
        assert all(0 <= r["relevance_score"] <= 1 for r in results)  # normalize='true' applied
    finally:
        serve.shutdown()


def test_serve_ray_command_runs_the_replicas_it_is_asked_for(
    local_ray: None, tiny_bert_dir: Path
) -> None:
    from ray import serve

    from rerankit.cli import build_parser
    from rerankit.cli.serve import deploy_on_ray, model_configs, serve_settings

    port = _free_port()
    command = f"serve --ray --model {tiny_bert_dir} --replicas 2 --port {port} --max-documents 3"
    args = build_parser().parse_args(command.split())
    deploy_on_ray(args, model_configs(args), serve_settings(args), blocking=False)
    try:
        application = serve.status().applications["default"]
        replicas = application.deployments["rerankit"].replica_states
        assert replicas.get("RUNNING") == 2
        url = f"http://127.0.0.1:{port}/v1/rerank"
        body = {"model": str(tiny_bert_dir), "query": "DNA repair", "documents": DOCS[:3]}
        results = httpx.post(url, json=body, timeout=60).json()["results"]
        want = Reranker(str(tiny_bert_dir), device="cpu").rank("DNA repair", DOCS[:3])
        assert [r["index"] for r in results] == want.indices
        too_many = httpx.post(url, json={**body, "documents": DOCS}, timeout=60)
        assert too_many.status_code == 413  # the command line's settings reach every replica
    finally:
        serve.shutdown()


def test_eval_with_ray_matches_the_local_run(
    local_ray: None, tiny_bert_dir: Path, tmp_path: Path
) -> None:
    from rerankit.cli import main
    from tests.conftest import SHARED_DATA

    reports = []
    for extra in ([], ["--ray", "2"]):
        out = tmp_path / ("ray" if extra else "local")
        args = [
            "eval",
            str(SHARED_DATA / "cranfield"),
            "--max-queries",
            "6",
            "--candidates",
            "15",
            "--reranker",
            f"name=tiny,model={tiny_bert_dir}",
            "--out",
            str(out),
            *extra,
        ]
        assert main(args) == 0
        reports.append(json.loads((out / "report.json").read_text()))
    local, on_ray = (r["systems"][1] for r in reports)
    assert on_ray["per_query"] == local["per_query"]
    assert on_ray["pairs"] == local["pairs"]
    assert reports[1]["settings"]["ray_actors"] == 2
