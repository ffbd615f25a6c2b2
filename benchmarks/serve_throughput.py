"""``rerankit serve`` under 1, 4 and 16 concurrent clients, micro-batching on and off.

Same requests (a real scifact claim with 10 real passages, shortened) for two models, one run:
all-MiniLM-L6-v2's real encoder with a seeded head (compute-bound on a CPU) and a tiny 2-layer
BERT (where per-request overhead dominates, as for a large model on a GPU). The server runs in its
own process; every response is checked: each document exactly once, no request lost.
Before the servers start, the same 16 requests are also scored in this process, one ``rank`` call
each and then in one ``rank_many`` call: the ceiling of what merging can gain on this hardware,
with no HTTP in the way. Run from the repository root:

    python benchmarks/serve_throughput.py [--requests 64] [--passage-chars 0]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from common import candidate_sets, model_factory

DOCS_PER_REQUEST = 10


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(model: Path, port: int, batching: bool) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "rerankit.cli",
        "serve",
        "--model",
        str(model),
        "--port",
        str(port),
    ]
    if not batching:
        command.append("--no-batching")
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError("server did not start")


async def load(
    url: str, model: str, clients: int, total: int, requests: list[tuple[str, list[str]]]
) -> dict[str, float]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    next_request = iter(range(total))

    async def client(http: httpx.AsyncClient) -> None:
        for i in next_request:
            query, docs = requests[i % len(requests)]
            started = time.perf_counter()
            response = await http.post(
                "/v1/rerank", json={"model": model, "query": query, "documents": docs}
            )
            latencies.append(time.perf_counter() - started)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if response.status_code == 200:
                indices = sorted(r["index"] for r in response.json()["results"])
                assert indices == list(range(len(docs))), "a document was lost or duplicated"

    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        elapsed = time.perf_counter() - started
    ok = statuses.get(200, 0)
    assert sum(statuses.values()) == total, "a request got no answer"
    ordered = sorted(latencies)
    return {
        "requests_per_second": ok / elapsed,
        "pairs_per_second": ok * DOCS_PER_REQUEST / elapsed,
        "p50_ms": statistics.median(ordered) * 1000,
        "p95_ms": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))] * 1000,
        "rejected": float(statuses.get(429, 0)),
        "errors": float(total - ok - statuses.get(429, 0)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=64, help="requests per measurement")
    parser.add_argument(
        "--passage-chars", type=int, default=300, help="cut passages to this length (0: whole)"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp())
    models = {
        "MiniLM-L6": model_factory.minilm_with_head(work / "minilm-ce"),
        "tiny BERT": model_factory.tiny_bert(work / "tiny", num_labels=1),
    }
    cut = args.passage_chars or None
    requests = [(q, [d[:cut] for d in docs]) for q, docs in candidate_sets(16, DOCS_PER_REQUEST)]
    print(
        f"{args.requests} requests of {DOCS_PER_REQUEST} passages "
        f"({f'cut to {cut}' if cut else 'whole'} characters) per measurement, {os.cpu_count()} CPUs"
    )
    for name, model in models.items():
        print(f"\n### {name}\n")
        ceiling(model, requests)
        measure(model, requests, args.requests)


def ceiling(model: Path, requests: list[tuple[str, list[str]]]) -> None:
    """Merged against one-by-one scoring of the same requests in this process (best of 3)."""
    from rerankit import Reranker

    logging.getLogger("rerankit").setLevel(logging.ERROR)  # whole passages: truncation notes
    reranker = Reranker(str(model))  # the device the server picks too
    reranker.rank_many(requests[:2])  # warm-up
    one_by_one, merged = [], []
    for _ in range(3):
        started = time.perf_counter()
        for query, docs in requests:
            reranker.rank(query, docs)
        one_by_one.append(time.perf_counter() - started)
        started = time.perf_counter()
        reranker.rank_many(requests)
        merged.append(time.perf_counter() - started)
    reranker.close()
    print(
        f"in process, no HTTP: {len(requests)} rank calls {min(one_by_one) * 1000:.0f} ms, "
        f"one rank_many call {min(merged) * 1000:.0f} ms: merging gains at most "
        f"{min(one_by_one) / min(merged):.2f}x here\n"
    )


def measure(model: Path, requests: list[tuple[str, list[str]]], total: int) -> None:
    results: dict[tuple[str, int], dict[str, float]] = {}
    for batching in (True, False):
        port = free_port()
        server = start_server(model, port, batching)
        try:
            url = f"http://127.0.0.1:{port}"
            asyncio.run(load(url, str(model), 1, 4, requests))  # warm-up
            for clients in (1, 4, 16):
                mode = "batching" if batching else "no batching"
                results[(mode, clients)] = asyncio.run(
                    load(url, str(model), clients, total, requests)
                )
        finally:
            server.terminate()
            server.wait(timeout=60)
    print(
        f"{'mode':<13}{'clients':>8}{'req/s':>8}{'pairs/s':>9}{'p50 ms':>8}{'p95 ms':>8}"
        f"{'429s':>6}{'errors':>7}"
    )
    for (mode, clients), r in results.items():
        print(
            f"{mode:<13}{clients:>8}{r['requests_per_second']:>8.1f}{r['pairs_per_second']:>9.1f}"
            f"{r['p50_ms']:>8.0f}{r['p95_ms']:>8.0f}{r['rejected']:>6.0f}{r['errors']:>7.0f}"
        )
    gain = (
        results[("batching", 16)]["pairs_per_second"]
        / results[("no batching", 16)]["pairs_per_second"]
    )
    print(f"\nbatching vs no batching at 16 clients: {gain:.2f}x pairs/s")


if __name__ == "__main__":
    main()
