"""The FlashRank backend and ``rerankit export`` against FlashRank's Ranker and the torch path."""

from __future__ import annotations

import copy
import http.server
import io
import json
import logging
import re
import shutil
import subprocess
import sys
import threading
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import flashrank
import numpy as np
import onnx
import pytest
from flashrank import Ranker, RerankRequest
from scipy.stats import kendalltau
from transformers import AutoTokenizer

import rerankit.backends.flashrank as flashrank_backend
from rerankit import BackendError, ConfigurationError, Reranker
from rerankit.cli import main
from rerankit.export import export_onnx
from tests import model_factory

QUERY = "Which proteins repair damaged DNA?"
PUBLISHED = "ms-marco-TinyBERT-L-2-v2"  # a FlashRank name: looked up in the cache, downloaded
Outcome = Reranker | Exception | None


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path) -> Path:
    return export_onnx(str(tiny_bert_dir), tmp_path_factory.mktemp("onnx") / "tiny-bert")


@pytest.fixture(scope="module")
def minilm_export(tmp_path_factory: pytest.TempPathFactory, minilm_reranker_dir: Path) -> Path:
    """The fp32 export of the MiniLM cross-encoder that ``minilm_reranker_dir`` holds."""
    return export_onnx(str(minilm_reranker_dir), tmp_path_factory.mktemp("onnx") / "minilm")


@pytest.fixture
def flashrank_cache(tmp_path: Path) -> Iterator[Path]:
    """A FlashRank cache directory; registered names are removed again afterwards."""
    before = dict(flashrank.Config.model_file_map)
    yield tmp_path / "cache"
    flashrank.Config.model_file_map.clear()
    flashrank.Config.model_file_map.update(before)


def _install(folder: Path, cache: Path, name: str) -> Path:
    """Copy an exported folder into a FlashRank cache as ``name`` and register it there."""
    target = cache / name
    shutil.copytree(folder, target)
    (onnx_file,) = target.glob("*.onnx")
    flashrank.Config.model_file_map[name] = onnx_file.name
    return target


@pytest.mark.parametrize("fixture", ["tiny_bert_dir", "tiny_bert_two_label_dir", "tiny_xlmr_dir"])
def test_scores_equal_flashrank_ranker(
    fixture: str,
    request: pytest.FixtureRequest,
    flashrank_cache: Path,
    tmp_path: Path,
    scifact_texts: list[str],
) -> None:
    folder = export_onnx(str(request.getfixturevalue(fixture)), tmp_path / "export")
    _install(folder, flashrank_cache, f"test-{fixture}")
    # Long passages too: both truncate them passage-side to 512 tokens.
    texts = [*scifact_texts[:25], "", "word " * 700]
    passages = [{"id": i, "text": t} for i, t in enumerate(texts)]
    before = copy.deepcopy(passages)
    theirs = Ranker(model_name=f"test-{fixture}", cache_dir=str(flashrank_cache)).rerank(
        RerankRequest(query=QUERY, passages=passages)
    )
    expected = np.zeros(len(before))
    for passage in theirs:
        expected[passage["id"]] = float(passage["score"])
    settings = {"backend": "flashrank", "cache_dir": str(flashrank_cache), "batch_size": 4}
    # FlashRank's Ranker reports probabilities (sigmoid, or softmax of the positive class):
    # normalize=True; the default is their log-odds.
    normalized = Reranker(f"test-{fixture}", normalize=True, **settings).score(QUERY, texts)
    assert normalized == pytest.approx(expected.tolist(), abs=1e-5)
    raw = Reranker(f"test-{fixture}", **settings).score(QUERY, texts)
    assert raw == pytest.approx(np.log(expected / (1 - expected)).tolist(), abs=1e-3)
    assert np.ptp(expected) > 1e-4, "FlashRank's scores are flat: the test could not fail"
    assert "score" in passages[0], "FlashRank mutates its input (rerankit must not)"
    assert [p["text"] for p in before] == texts


def test_export_scores_on_its_source_scale(
    minilm_reranker_dir: Path, minilm_export: Path, scifact_texts: list[str]
) -> None:
    """A cross-encoder and its fp32 export: the same numbers, by default and normalized."""
    docs = [*scifact_texts[:24], "word " * 700]
    scores = {}
    for settings, scale in (({}, "logit"), ({"normalize": True}, "probability")):
        torch_rr = Reranker(str(minilm_reranker_dir), **settings)
        onnx_rr = Reranker(str(minilm_export), **settings)
        scores[scale] = torch_rr.score(QUERY, docs)
        assert onnx_rr.score(QUERY, docs) == pytest.approx(scores[scale], abs=1e-5)
        assert torch_rr.rank(QUERY, docs).scale == onnx_rr.rank(QUERY, docs).scale == scale
    assert all(0.0 <= s <= 1.0 for s in scores["probability"])
    windowed = {"max_length": 64, "max_windows": 4}
    assert Reranker(str(minilm_export), **windowed).score(QUERY, docs) == pytest.approx(
        Reranker(str(minilm_reranker_dir), **windowed).score(QUERY, docs), abs=1e-5
    )
    sigmoid = 1 / (1 + np.exp(-np.asarray(scores["logit"])))
    assert scores["probability"] == pytest.approx(sigmoid.tolist(), abs=1e-6)
    assert np.ptp(scores["logit"]) > 1e-3, "scores are flat: the test could not fail"


def test_long_query_is_capped_like_the_cross_encoder(
    minilm_reranker_dir: Path,
    minilm_export: Path,
    scifact_texts: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    long_query = " ".join([QUERY] * 350)  # about 2,100 tokens
    docs = [*scifact_texts[:12], "short passage"]
    tokenizer = AutoTokenizer.from_pretrained(minilm_reranker_dir)
    assert len(tokenizer(long_query, add_special_tokens=False)["input_ids"]) > 1900
    # 512 tokens: 3 special, 256 of query (max_length // 2); passages keep 253 at most.
    lengths = [len(ids) for ids in tokenizer(docs, add_special_tokens=False)["input_ids"]]
    expected_truncated = sum(n > 253 for n in lengths)
    assert 0 < expected_truncated < len(docs)
    with caplog.at_level(logging.WARNING, logger="rerankit"):
        onnx = Reranker(str(minilm_export), backend="flashrank").rank(long_query, docs)
    assert "query truncated to max_query_length=256 tokens" in caplog.text
    torch_result = Reranker(str(minilm_reranker_dir)).rank(long_query, docs)
    assert onnx.truncated == torch_result.truncated == expected_truncated
    assert onnx.indices == torch_result.indices
    assert onnx.scores == pytest.approx(torch_result.scores, abs=1e-4)


def test_export_refuses_checkpoints_that_would_score_noise(tmp_path: Path) -> None:
    """A plain encoder or a causal LM would be exported with a random head."""
    with pytest.raises(ConfigurationError, match=r"classifier\.bias', 'classifier\.weight'"):
        export_onnx(str(model_factory.minilm_dir()), tmp_path / "minilm")
    qwen3 = model_factory.tiny_qwen3_causal_lm(tmp_path / "qwen3")
    with pytest.raises(ConfigurationError, match="causal-LM reranker"):
        export_onnx(str(qwen3), tmp_path / "qwen3-onnx")
    assert not (tmp_path / "minilm").exists()
    assert not (tmp_path / "qwen3-onnx").exists()


def test_int8_export_keeps_the_ranking(
    minilm_reranker_dir: Path, tmp_path: Path, scifact_texts: list[str]
) -> None:
    assert (
        main(["export", str(minilm_reranker_dir), str(tmp_path / "int8"), "--quantize", "int8"])
        == 0
    )
    assert [p.name for p in (tmp_path / "int8").glob("*.onnx")] == ["model_int8.onnx"]
    docs = scifact_texts[:40]
    fp32 = Reranker(str(minilm_reranker_dir)).score(QUERY, docs)
    int8 = Reranker(str(tmp_path / "int8")).score(QUERY, docs)
    tau = kendalltau(fp32, int8).statistic
    assert tau > 0.8, f"int8 ranking disagrees: Kendall tau {tau:.3f}"
    (path,) = (tmp_path / "int8").glob("*.onnx")
    weights = {w.name: onnx.numpy_helper.to_array(w) for w in onnx.load(path).graph.initializer}
    matrices = [  # the MatMul weights; embedding tables are quantized as one tensor each
        name.removesuffix("_quantized")
        for name in weights
        if name.endswith("_quantized") and "embeddings" not in name
    ]
    assert len(matrices) >= 36, "6 layers x 6 weight matrices should be quantized"
    for name in matrices:  # one scale per output channel
        assert weights[f"{name}_scale"].shape == weights[f"{name}_quantized"].shape[-1:]


def test_cpu_sessions_leave_the_skip_layer_norm_fusion_off(
    tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The backend loads with UNFUSED on CPU, and UNFUSED keeps the residual Add and the
    LayerNorm apart in the int8 graph ONNX Runtime runs (a default session fuses them)."""
    ort = flashrank_backend.ort
    exported = export_onnx(str(tiny_bert_dir), tmp_path / "int8", quantize="int8")
    (model_file,) = exported.glob("*.onnx")

    def optimized_ops(name: str, disabled: tuple[str, ...]) -> set[str]:
        options = ort.SessionOptions()
        options.optimized_model_filepath = str(tmp_path / f"{name}.onnx")
        ort.InferenceSession(
            str(model_file),
            options,
            providers=["CPUExecutionProvider"],
            disabled_optimizers=disabled,
        )
        return {node.op_type for node in onnx.load(options.optimized_model_filepath).graph.node}

    assert "SkipLayerNormalization" in optimized_ops("default", ())
    unfused = optimized_ops("unfused", flashrank_backend.UNFUSED)
    assert "SkipLayerNormalization" not in unfused
    assert "LayerNormalization" in unfused
    loads: list[dict[str, object]] = []
    load = ort.InferenceSession
    monkeypatch.setattr(
        ort, "InferenceSession", lambda *a, **kw: loads.append(kw) or load(*a, **kw)
    )
    Reranker(str(exported)).score(QUERY, ["DNA repair enzymes"])
    assert [kwargs["disabled_optimizers"] for kwargs in loads] == [flashrank_backend.UNFUSED]


def test_max_length_is_capped_at_the_models_positions(exported: Path, tmp_path: Path) -> None:
    folder = tmp_path / "unbounded"
    shutil.copytree(exported, folder)
    settings = json.loads((folder / "tokenizer_config.json").read_text())
    settings["model_max_length"] = int(1e30)  # what many hub tokenizers ship
    (folder / "tokenizer_config.json").write_text(json.dumps(settings))
    positions = json.loads((folder / "config.json").read_text())["max_position_embeddings"]
    rr = Reranker(str(folder), max_length=4 * positions)
    assert rr.rank(QUERY, ["word " * (2 * positions), "short"]).truncated == 1


def test_export_refuses_a_folder_it_would_make_ambiguous_or_a_file(
    exported: Path, tiny_bert_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "again"
    shutil.copytree(exported, folder)
    with pytest.raises(ConfigurationError, match="already holds"):
        export_onnx(str(tiny_bert_dir), folder, quantize="int8")
    assert sorted(p.name for p in folder.glob("*.onnx")) == ["model.onnx"]
    (tmp_path / "a-file").write_text("mine")
    with pytest.raises(ConfigurationError, match="is a file"):
        export_onnx(str(tiny_bert_dir), tmp_path / "a-file")
    with pytest.raises(BackendError, match="opset 99"):
        export_onnx(str(tiny_bert_dir), tmp_path / "opset", opset=99)
    assert not (tmp_path / "opset").exists()


def test_batches_are_length_sorted_and_inputs_untouched(
    exported: Path, scifact_texts: list[str]
) -> None:
    docs = scifact_texts[:30]
    snapshot = list(docs)
    one_pass = Reranker(str(exported), batch_size=64, max_batch_tokens=10**6).score(QUERY, docs)
    small = Reranker(str(exported), batch_size=3, max_batch_tokens=500).score(QUERY, docs)
    assert small == pytest.approx(one_pass, abs=1e-5)
    assert docs == snapshot


def test_truncation_is_reported(exported: Path) -> None:
    result = Reranker(str(exported), max_length=32).rank(QUERY, ["word " * 100, "short"])
    assert result.truncated == 1


def test_missing_named_model_says_where_to_put_it(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match=r"put the model folder at .*ms-marco-TinyBERT-L-2-v2"):
        Reranker(PUBLISHED, cache_dir=str(tmp_path))


def test_cache_dir_expands_the_home_folder(
    exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    shutil.copytree(exported, tmp_path / "models" / PUBLISHED)
    reranker = Reranker(PUBLISHED, backend="flashrank", cache_dir="~/models")
    assert len(reranker.score(QUERY, ["DNA repair"])) == 1


def test_model_file_choice_and_providers(exported: Path, tmp_path: Path) -> None:
    folder = tmp_path / "two"
    shutil.copytree(exported, folder)
    shutil.copy(folder / "model.onnx", folder / "other.onnx")
    with pytest.raises(ConfigurationError, match="choose one with model_file="):
        Reranker(str(folder), backend="flashrank")
    assert (
        len(Reranker(str(folder), backend="flashrank", model_file="other.onnx").score("q", ["a"]))
        == 1
    )
    with pytest.raises(ConfigurationError, match="not available here"):
        Reranker(str(exported), providers=["CUDAExecutionProvider"])
    threads = Reranker(str(exported), intra_op_num_threads="1", inter_op_num_threads=1)
    assert len(threads.score("q", ["a", "b"])) == 2


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("providers", "CPUExecutionProvider", "option providers takes a list of strings"),
        ("intra_op_num_threads", -1, "option intra_op_num_threads must be >= 0, got -1"),
        ("max_batch_tokens", "many", "option max_batch_tokens takes an int, got 'many'"),
        ("cache", "/tmp", "does not accept the options ['cache']"),
    ],
)
def test_malformed_options_are_configuration_errors(
    exported: Path, option: str, value: object, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        Reranker(str(exported), backend="flashrank", **{option: value})


def test_runs_without_torch(exported: Path) -> None:
    code = (
        "import sys\n"
        "sys.modules['torch'] = None\n"
        "sys.modules['transformers'] = None\n"
        "from rerankit import Reranker\n"
        f"print(Reranker({str(exported)!r}).rank('q', ['a', 'b']).backend)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "flashrank"


class _ModelServer:
    """Serves FlashRank zips on 127.0.0.1: one body per request, in order (the last repeats)."""

    def __init__(self, bodies: list[bytes], *, together: int = 1, answer: bool = True) -> None:
        self.bodies = bodies
        self.requests = 0
        self.answer = threading.Event()
        if answer:
            self.answer.set()
        self.arrived = threading.Barrier(together, timeout=30)
        self.lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with server.lock:
                    body = server.bodies[min(server.requests, len(server.bodies) - 1)]
                    server.requests += 1
                server.arrived.wait()  # several clients download at the same time
                if not server.answer.wait(timeout=30):
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/zip")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/{{}}.zip"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.answer.set()
        self.arrived.abort()
        self.httpd.shutdown()
        self.httpd.server_close()


def _zipped(folder: Path, name: str, *, corrupt: bool = False) -> bytes:
    """``folder`` as FlashRank publishes it: a zip holding ``name/``.

    ``corrupt`` puts a member with a bad checksum right after config.json, so an extraction
    fails with part of the folder written.
    """
    buffer = io.BytesIO()
    filler = b"A" * 4096
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.write(folder / "config.json", f"{name}/config.json")
        if corrupt:
            archive.writestr(f"{name}/checksum-test.bin", filler)
        for path in sorted(folder.iterdir()):
            if path.name != "config.json":
                archive.write(path, f"{name}/{path.name}")
    data = buffer.getvalue()
    return data.replace(filler, b"B" * len(filler)) if corrupt else data


StartServer = Callable[..., _ModelServer]


@pytest.fixture
def serve_models(monkeypatch: pytest.MonkeyPatch) -> Iterator[StartServer]:
    """Start model servers; FLASHRANK_URL points at the last one started, downloads allowed."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    started: list[_ModelServer] = []

    def start(bodies: list[bytes], *, together: int = 1, answer: bool = True) -> _ModelServer:
        server = _ModelServer(bodies, together=together, answer=answer)
        started.append(server)
        monkeypatch.setattr(flashrank_backend, "FLASHRANK_URL", server.url)
        return server

    yield start
    for server in started:
        server.close()


def _run_together(targets: list[Callable[[], Reranker]], *, seconds: float) -> list[Outcome]:
    """Start every target in its own thread at once; each one's reranker or exception.

    A target still running after ``seconds`` fails the test instead of hanging it.
    """
    outcomes: list[Outcome] = [None] * len(targets)

    def run(slot: int) -> None:
        try:
            outcomes[slot] = targets[slot]()
        except Exception as exc:
            outcomes[slot] = exc

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(targets))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds)
        assert not thread.is_alive(), f"still running after {seconds} s"
    return outcomes


def test_concurrent_downloads_share_one_complete_folder(
    serve_models: StartServer, exported: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = serve_models([_zipped(exported, PUBLISHED)], together=2)
    cache = tmp_path / "cache"

    def load() -> Reranker:
        return Reranker(PUBLISHED, backend="flashrank", cache_dir=str(cache))

    with caplog.at_level(logging.INFO, logger="rerankit"):
        outcomes = _run_together([load, load], seconds=60)
    assert server.requests == 2, "both starts downloaded at the same time"
    assert "was downloaded by another process meanwhile; using it" in caplog.text
    assert sorted(p.name for p in cache.iterdir()) == [PUBLISHED], "temporary folders were left"
    expected = Reranker(str(exported)).score(QUERY, ["DNA repair", "bread"])
    for outcome in outcomes:
        assert isinstance(outcome, Reranker), outcome
        assert outcome.score(QUERY, ["DNA repair", "bread"]) == pytest.approx(expected)


def test_a_failed_download_leaves_no_partial_folder(
    serve_models: StartServer, exported: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    server = serve_models(
        [_zipped(exported, PUBLISHED, corrupt=True), _zipped(exported, PUBLISHED)]
    )
    with pytest.raises(BackendError, match="could not download"):
        Reranker(PUBLISHED, backend="flashrank", cache_dir=str(cache))
    assert list(cache.iterdir()) == [], "a partial model folder stayed in the cache"
    retried = Reranker(PUBLISHED, backend="flashrank", cache_dir=str(cache))
    assert server.requests == 2
    assert len(retried.score(QUERY, ["DNA repair", "bread"])) == 2


def test_a_server_that_never_answers_times_out(
    serve_models: StartServer, exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    serve_models([_zipped(exported, PUBLISHED)], answer=False)
    # raising=False: without the constant (a download with no timeout) the test fails, not hangs.
    monkeypatch.setattr(flashrank_backend, "DOWNLOAD_TIMEOUT", 0.5, raising=False)
    cache = tmp_path / "cache"
    (outcome,) = _run_together(
        [lambda: Reranker(PUBLISHED, backend="flashrank", cache_dir=str(cache))], seconds=20
    )
    assert isinstance(outcome, BackendError), outcome
    assert "timed out" in str(outcome)
    assert list(cache.iterdir()) == []


@pytest.mark.parametrize(
    ("variable", "value"),
    [("HF_HUB_OFFLINE", "1"), ("HF_HUB_OFFLINE", "true"), ("TRANSFORMERS_OFFLINE", "YES")],
)
def test_every_spelling_of_offline_forbids_the_download(
    serve_models: StartServer,
    exported: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
) -> None:
    server = serve_models([_zipped(exported, PUBLISHED)])
    monkeypatch.setenv(variable, value)
    with pytest.raises(BackendError, match=f"{variable} is set"):
        Reranker(PUBLISHED, backend="flashrank", cache_dir=str(tmp_path / "cache"))
    assert server.requests == 0
