"""A real OpenAI-compatible chat-completions server on 127.0.0.1, answering from a script.

It reads the passages of a listwise prompt (``[i] text`` in the user turns, either prompt
style) and knows the right order: by ``rule`` (default :func:`relevance`: the number after
``score`` in each passage), highest first. Each scripted step says how to answer one request:

* ``"oracle"``: the right order, ``[3] > [1] > [2]``;
* ``("say", text)``: ``text`` as the answer; ``{order}`` in it becomes the right order;
* ``("status", code, retry_after | None)``, ``("slow", seconds)`` then the right order,
  ``"drop"`` (close without answering), ``"invalid-json"``, ``"no-choices"``.

Once the script is used up, every request gets ``default_step``. Requests are recorded (bodies,
headers, and the passages each one held).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from tests.backends.http_server import JSONHandler, ScriptedServer, serving

_PASSAGE = re.compile(r"^\[(\d+)\] (.*)$", re.MULTILINE)
_SCORE = re.compile(r"score (\d+)")


_QUERY = re.compile(r"Search Query: (.*)\.\s*\nRank")


def relevance(query: str, text: str) -> float:
    """The server's default rule: the number after ``score`` in the passage (0 without one)."""
    found = _SCORE.search(text)
    return int(found.group(1)) if found else 0


def shared_words(query: str, text: str) -> float:
    """Another rule: words shared with the query (for real retrieval sets)."""
    words = set(query.lower().split())
    return float(sum(w in words for w in text.lower().split()))


def query_of(body: dict[str, Any]) -> str:
    """The query as the prompt states it (``Search Query: ...`` in the last user turn)."""
    found = _QUERY.search(body["messages"][-1]["content"])
    return found.group(1) if found else ""


def passages_of(body: dict[str, Any]) -> list[str]:
    """The passages of a listwise prompt, in identifier order (from the user turns)."""
    found: dict[int, str] = {}
    for message in body["messages"]:
        if message["role"] == "user":
            for number, text in _PASSAGE.findall(message["content"]):
                found[int(number)] = text
    return [found[i] for i in sorted(found)]


Rule = Callable[[str, str], float]


def right_order(query: str, passages: list[str], rule: Rule = relevance) -> str:
    """``[i] > [j] > ...``: the passages best first by ``rule``, ties in order."""
    ranked = sorted(range(len(passages)), key=lambda i: (-rule(query, passages[i]), i))
    return " > ".join(f"[{i + 1}]" for i in ranked)


class ChatServer(ScriptedServer):
    def __init__(self) -> None:
        super().__init__(_Handler, default_step="oracle")
        self.windows: list[list[str]] = []  # the passages of each request, in arrival order
        self.before_answer: Callable[[dict[str, Any]], None] | None = None
        self.rule: Rule = relevance


class _Handler(JSONHandler):
    server: ChatServer

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        passages = passages_of(body)
        with self.server.lock:
            self.server.requests.append(body)
            self.server.headers_seen.append(dict(self.headers))
            self.server.windows.append(passages)
        if self.path != "/v1/chat/completions":
            self._send(404, {"error": {"message": f"no route {self.path}"}})
            return
        step = self.server.next_step()
        if self.server.before_answer is not None:
            self.server.before_answer(body)
        if step == "drop":
            self.connection.shutdown(2)  # close without any response
            return
        if isinstance(step, tuple) and step[0] == "slow":
            time.sleep(step[1])
        if isinstance(step, tuple) and step[0] == "status":
            _, code, retry_after = step
            headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
            self._send(code, {"error": {"message": f"scripted {code}"}}, headers)
            return
        if step == "invalid-json":
            self._send_raw(200, b"<html>not json</html>")
            return
        if step == "no-choices":
            self._send(200, {"object": "chat.completion", "choices": []})
            return
        order = right_order(query_of(body), passages, self.server.rule)
        answer = step[1].replace("{order}", order) if isinstance(step, tuple) else order
        prompt_words = sum(len(m["content"].split()) for m in body["messages"])
        self._send(
            200,
            {
                "id": "chatcmpl-test",
                "object": "chat.completion",
                "model": body.get("model"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": answer},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_words,
                    "completion_tokens": len(answer.split()),
                    "total_tokens": prompt_words + len(answer.split()),
                },
            },
        )


@contextmanager
def running_chat_server(max_seconds: float = 120.0) -> Iterator[ChatServer]:
    """Serve in a thread; stops at exit, or by itself after ``max_seconds``."""
    with serving(ChatServer(), max_seconds) as server:
        yield server
