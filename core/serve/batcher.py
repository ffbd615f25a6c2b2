"""Dynamic micro-batching: pairs from concurrent requests scored in shared batches.

When the worker is free it takes everything already queued (up to ``max_batch_pairs`` pairs)
at once: under load, requests that arrived while a batch was being scored form the next batch,
and an idle server adds no delay. ``max_wait_ms`` > 0 additionally waits that long for company.
A merged batch is one :meth:`Reranker.arank_many` call (local models score on their backend's
own worker thread, services are called natively async). If it fails because the service is
unavailable (:class:`~rerankit.errors.ServiceUnavailableError`: upstream down, rate-limited,
circuit open), every request of the batch gets that error at once: retrying them one by one
would only queue them behind the same dead upstream. Any other failure is retried one request at
a time, so a request that cannot be scored fails alone. The queue is bounded in pairs: beyond
``max_queue_pairs`` a request is refused at once (:class:`QueueFullError`, HTTP 429) instead of
waiting without bound.

A request's documents are what :meth:`Reranker.rank` takes: strings, and
:class:`~rerankit.Document` objects (image documents too); they reach the reranker as given, so
a merged batch ranks each request exactly as ranking it alone would. A pair is a (query,
document) pair whatever the document holds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from rerankit.errors import RerankitError, ServiceUnavailableError
from rerankit.reranker import DocumentInput, Reranker
from rerankit.types import RankResult


class QueueFullError(RerankitError):
    """The server holds ``max_queue_pairs`` pairs already; retry after a moment."""


@dataclass
class _Pending:
    query: str
    texts: Sequence[DocumentInput]  # strings and Documents (image documents too)
    future: asyncio.Future[RankResult]
    top_k: int | None = None
    enqueued: float = field(default_factory=time.perf_counter)


class MicroBatcher:
    """Queue of rerank requests for one reranker, scored in merged batches by one worker."""

    def __init__(
        self,
        reranker: Reranker,
        *,
        enabled: bool = True,
        max_batch_pairs: int = 256,
        max_wait_ms: float = 0.0,
        max_queue_pairs: int = 8192,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> None:
        self.reranker = reranker
        self.enabled = enabled
        self.max_batch_pairs = max_batch_pairs
        self.max_wait = max_wait_ms / 1000
        self.max_queue_pairs = max_queue_pairs
        self.queued_pairs = 0
        self._on_batch = on_batch
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Finish what is queued, then stop the worker."""
        if self._worker is None:
            return
        await self._queue.join()
        self._worker.cancel()
        await asyncio.gather(self._worker, return_exceptions=True)
        self._worker = None

    async def submit(
        self, query: str, texts: Sequence[DocumentInput], top_k: int | None = None
    ) -> RankResult:
        """``texts`` (strings or :class:`~rerankit.Document`, image documents too) ranked for
        ``query``, or :class:`QueueFullError` when the queue is full.

        ``top_k`` keeps the best ``top_k``; a batch whose requests all keep the same number
        passes it on as the backend's hint (a listwise backend then orders fewer windows).
        """
        if self.queued_pairs + len(texts) > self.max_queue_pairs:
            raise QueueFullError(
                f"queue holds {self.queued_pairs} pairs; this request adds {len(texts)} "
                f"(limit {self.max_queue_pairs})"
            )
        self.queued_pairs += len(texts)
        future: asyncio.Future[RankResult] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(query, texts, future, top_k))
        try:
            return await future
        finally:
            if not future.done():
                future.cancel()

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            if self.enabled:
                await self._fill(batch)
            live = [p for p in batch if not p.future.done()]  # skip callers that gave up
            try:
                if live:
                    await self._score(live)
                    if self._on_batch is not None:
                        self._on_batch(len(live), sum(len(p.texts) for p in live))
            finally:
                for pending in batch:
                    self.queued_pairs -= len(pending.texts)
                    self._queue.task_done()

    async def _score(self, live: list[_Pending]) -> None:
        requests = [(p.query, p.texts) for p in live]
        cuts = {p.top_k for p in live}
        top_k = cuts.pop() if len(cuts) == 1 else None
        try:
            results = await self.reranker.arank_many(requests, top_k=top_k)
        except ServiceUnavailableError as exc:  # the same for every request: fail them all now
            for pending in live:
                if not pending.future.done():
                    pending.future.set_exception(exc)
            return
        except Exception as exc:  # retry alone, or hand the caller the reranker's error
            if len(live) > 1:
                for pending in live:
                    if not pending.future.done():
                        await self._score([pending])
            elif not live[0].future.done():
                live[0].future.set_exception(exc)
            return
        for pending, result in zip(live, results, strict=True):
            if not pending.future.done():
                pending.future.set_result(result)

    async def _fill(self, batch: list[_Pending]) -> None:
        pairs = len(batch[0].texts)
        while pairs < self.max_batch_pairs and not self._queue.empty():
            item = self._queue.get_nowait()
            batch.append(item)
            pairs += len(item.texts)
        deadline = time.perf_counter() + self.max_wait
        while pairs < self.max_batch_pairs:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            try:
                item = await asyncio.wait_for(self._queue.get(), timeout=remaining)
            except asyncio.TimeoutError:
                break
            batch.append(item)
            pairs += len(item.texts)
