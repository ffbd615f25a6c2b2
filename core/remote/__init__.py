"""Services over HTTP: one transport, and the wire formats that ride on it.

``transport``: clients, timeouts, retries, the circuit breaker (``circuit``), typed errors and
secrets, for every remote backend; ``usage``: billed figures, summed and priced.
``rerank_api``: rerank services of the Jina shape (the ``jina`` backend). ``chat``:
OpenAI-compatible chat completions (the ``listwise`` backend on a server). The options below
(and ``usage``) import without httpx, so a backend that may run either here or on a service
can declare them.
"""

from rerankit.options import Option

# The options of every backend that calls a service through rerankit.remote.transport.
TRANSPORT_OPTIONS: dict[str, Option] = {
    "timeout": Option("float", 30.0, "seconds to wait for an answer", minimum=0.001),
    "connect_timeout": Option("float", 5.0, "seconds to wait for a connection", minimum=0.001),
    "max_concurrency": Option("int", 4, "calls in flight at once at most", minimum=1),
    "max_retries": Option("int", 3, "retries of a 429, 5xx, timeout or lost call", minimum=0),
    "backoff_initial": Option("float", 0.5, "first retry delay in seconds", minimum=0),
    "backoff_max": Option("float", 8.0, "longest retry delay in seconds", minimum=0),
    "max_retry_after": Option(
        "float", 30.0, "longest Retry-After waited for, in seconds", minimum=0
    ),
    "failure_threshold": Option(
        "int", 5, "consecutive failed calls that open the circuit", minimum=1
    ),
    "reset_after": Option(
        "float", 30.0, "seconds the circuit stays open before a trial call", minimum=0
    ),
}
