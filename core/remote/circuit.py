"""A small circuit breaker for remote backends: sync, async and thread safe.

Every call to a service passes the breaker through :meth:`CircuitBreaker.trial`, a context
manager that admits the call (or raises :class:`~rerankit.errors.CircuitOpenError`) and
records how the call ended in a ``finally``, so no outcome can leave the breaker stuck::

    with circuit.trial():
        response = client.post(...)

What an outcome means for the breaker:

* **failure**, the service is unavailable: a :class:`~rerankit.errors.ServiceUnavailableError`
  (5xx or 429 after retries, timeouts, refused or dropped connections, malformed answers).
  ``failure_threshold`` consecutive failures open the circuit; a failed half-open trial opens it
  again for ``reset_after`` seconds.
* **the service is up**: an answer, or a :class:`~rerankit.errors.RemoteError` that is not a
  failure (400, 401, 403, 404, 413, 422: the service answered and refused the request). It
  closes the circuit and clears the failure count; a wrong key is the caller's problem, never
  a reason to stop calling the service.
* **no verdict**: anything else (an httpx error rerankit does not map, a bug, the cancellation
  of an async call, ``KeyboardInterrupt``). The circuit state and the failure count stay as
  they were; a half-open trial is released, so the next call may try the service again.

While open, calls are refused without reaching the service. Once ``reset_after`` seconds have
passed the circuit is half-open: exactly one call at a time goes out as the trial, the others
are refused until it ends.

Why not a library: ``pybreaker`` (maintained) holds its lock for the whole duration of each
call, which serialises the concurrent requests a remote backend sends, and its async support
is Tornado's, not asyncio's; ``aiobreaker`` has had no release since 2021; ``purgatory`` keeps
separate sync and async breakers, so the sync and async paths of one backend would not share
one state; ``circuitbreaker`` is a decorator without a lock. None of them records the end of a
call that was cancelled (``asyncio.CancelledError`` is a ``BaseException``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal

from rerankit.errors import CircuitOpenError, RemoteError, ServiceUnavailableError

State = Literal["closed", "open", "half-open"]


class CircuitBreaker:
    """Open after ``failure_threshold`` consecutive failures; half-open after ``reset_after`` s.

    >>> circuit = CircuitBreaker(failure_threshold=2, reset_after=30.0, name="http://svc")
    >>> with circuit.trial():
    ...     pass  # the call to the service
    >>> circuit.state
    'closed'
    """

    def __init__(
        self,
        failure_threshold: int,
        reset_after: float,
        *,
        name: str = "the service",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.reset_after = reset_after
        self.name = name
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_running = False
        self._lock = threading.Lock()  # held for a few instructions, never across a call

    @property
    def state(self) -> State:
        """``"closed"``, ``"open"`` or ``"half-open"`` (a trial is due or running)."""
        with self._lock:
            if self._opened_at is None:
                return "closed"
            return "half-open" if self._cool_down_over() else "open"

    def seconds_until_retry(self) -> float:
        """How long until a half-open trial is allowed (0 when closed or already due)."""
        with self._lock:
            if self._opened_at is None:
                return 0.0
            return max(0.0, self._opened_at + self.reset_after - self._clock())

    @contextmanager
    def trial(self) -> Iterator[None]:
        """Admit one call (or raise :class:`CircuitOpenError`) and record how it ended."""
        is_trial = self._admit()
        service_up: bool | None = None  # None: no verdict (see the module docstring)
        try:
            yield
            service_up = True
        except ServiceUnavailableError:
            service_up = False
            raise
        except RemoteError:  # the service answered, and refused this request
            service_up = True
            raise
        finally:
            self._record(service_up, is_trial)

    def _admit(self) -> bool:
        """True when this call is the half-open trial; raises while the circuit is open."""
        with self._lock:
            if self._opened_at is None:
                return False
            if self._cool_down_over() and not self._trial_running:
                self._trial_running = True
                return True
            if self._trial_running:
                wait = "a trial call is in flight"
            else:
                seconds = self._opened_at + self.reset_after - self._clock()
                wait = f"next trial in {max(0.0, seconds):.1f} s"
            raise CircuitOpenError(
                f"{self.name}: circuit open after {self.failure_threshold} consecutive "
                f"failures; {wait}"
            )

    def _record(self, service_up: bool | None, is_trial: bool) -> None:
        with self._lock:
            if is_trial:  # only the trial itself frees the slot; late calls from before cannot
                self._trial_running = False
            if service_up is True:
                self._failures = 0
                self._opened_at = None
            elif service_up is False:
                self._failures += 1
                if self._opened_at is not None or self._failures >= self.failure_threshold:
                    self._opened_at = self._clock()

    def _cool_down_over(self) -> bool:
        assert self._opened_at is not None
        return self._clock() - self._opened_at >= self.reset_after
