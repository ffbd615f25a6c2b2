"""A small, thread-safe circuit breaker for remote backends."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class CircuitBreaker:
    """Open after ``failure_threshold`` consecutive failures; half-open after ``reset_after`` s.

    While open, :meth:`allow` is False. Once ``reset_after`` seconds have passed, one trial call
    is allowed (half-open): its success closes the circuit, its failure opens it again.
    """

    def __init__(
        self,
        failure_threshold: int,
        reset_after: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.reset_after = reset_after
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_running = False
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        """``"closed"``, ``"open"`` or ``"half-open"``."""
        with self._lock:
            if self._opened_at is None:
                return "closed"
            return "half-open" if self._cool_down_over() else "open"

    def allow(self) -> bool:
        """Whether a call may go out now (claims the single half-open trial if it is due)."""
        with self._lock:
            if self._opened_at is None:
                return True
            if self._cool_down_over() and not self._trial_running:
                self._trial_running = True
                return True
            return False

    def seconds_until_retry(self) -> float:
        """How long until a half-open trial is allowed (0 when closed)."""
        with self._lock:
            if self._opened_at is None:
                return 0.0
            return max(0.0, self._opened_at + self.reset_after - self._clock())

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._trial_running = False

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            self._trial_running = False
            if self._opened_at is not None or self._failures >= self.failure_threshold:
                self._opened_at = self._clock()

    def _cool_down_over(self) -> bool:
        assert self._opened_at is not None
        return self._clock() - self._opened_at >= self.reset_after
