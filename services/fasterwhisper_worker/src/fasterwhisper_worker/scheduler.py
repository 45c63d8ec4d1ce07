"""Gathers concurrent requests into batches that run on dedicated threads, most urgent first.

A thread that was idle waits ``gather_s`` after the first request, so that requests made at about
the same time (streams whose partials fall due together) share a batch; requests that arrive while
a batch runs are taken by the next one without waiting. A batch takes at most ``max_batch``
requests, lowest ``rank`` first, then in arrival order, and no more than its share when other
threads are idle too. Callers of any event loop await a result;
a caller cancelled while its request waits removes it from the queue.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Request = TypeVar("Request")
Result = TypeVar("Result")


class SchedulerClosedError(RuntimeError):
    """The scheduler was closed before the request ran."""


@dataclass(order=True, slots=True)
class _Pending(Generic[Request, Result]):
    rank: int
    seq: int
    request: Request = field(compare=False)
    future: Future[Result] = field(compare=False)


Deliver = Callable[[int, Result | Exception], None]


class BatchScheduler(Generic[Request, Result]):
    """Runs ``run`` on batches of requests; ``run`` delivers each request's result or exception,
    by its index in the batch, as soon as it has it."""

    def __init__(
        self,
        run: Callable[[Sequence[Request], Deliver[Result]], None],
        rank: Callable[[Request], int],
        *,
        max_batch: int,
        gather_s: float,
        threads: int = 1,
        name: str = "batch",
    ) -> None:
        self._run = run
        self._rank = rank
        self._max_batch = max_batch
        self._gather_s = gather_s
        self._pending: list[_Pending[Request, Result]] = []
        self._seq = 0
        self._cond = threading.Condition()
        self._closed = False
        self.batches = 0  # batches run, for tests and metrics
        self._idle = 0  # threads waiting for requests
        self._threads = [
            threading.Thread(target=self._serve, name=f"{name}-{i}", daemon=True)
            for i in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    async def submit(self, request: Request) -> Result:
        """The request's result, once a batch ran it; its exception when it failed alone."""
        future: Future[Result] = Future()
        with self._cond:
            if self._closed:
                raise SchedulerClosedError("scheduler is closed")
            self._seq += 1
            self._pending.append(_Pending(self._rank(request), self._seq, request, future))
            self._cond.notify()
        return await asyncio.wrap_future(future)

    @property
    def queued(self) -> int:
        with self._cond:
            return len(self._pending)

    def close(self) -> None:
        """Fails every queued request; a running batch ends alone and its threads exit."""
        with self._cond:
            self._closed = True
            dropped, self._pending = self._pending, []
            self._cond.notify_all()
        for pending in dropped:
            if pending.future.set_running_or_notify_cancel():
                pending.future.set_exception(SchedulerClosedError("scheduler is closed"))

    def _serve(self) -> None:
        while (batch := self._next_batch()) is not None:

            def deliver(
                index: int,
                result: Result | Exception,
                batch: list[_Pending[Request, Result]] = batch,
            ) -> None:
                future = batch[index].future
                if future.done():
                    return
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)

            try:
                self._run([p.request for p in batch], deliver)
            except Exception as exc:  # noqa: BLE001 - each caller not served gets it
                for index in range(len(batch)):
                    deliver(index, exc)
            for index in range(len(batch)):
                deliver(index, RuntimeError("the batch delivered no result for this request"))

    def _next_batch(self) -> list[_Pending[Request, Result]] | None:
        """The most urgent requests (None once closed), after the gathering pause when idle.

        Requests are shared out among the threads waiting for them, so that idle threads (and
        the cores they run on) each take a part instead of one taking all."""
        with self._cond:
            self._idle += 1
            idle = not self._pending
            while not self._pending and not self._closed:
                self._cond.wait()
        if idle and self._gather_s > 0:
            time.sleep(self._gather_s)
        with self._cond:
            while True:
                if self._closed:
                    self._idle -= 1
                    return None
                self._pending.sort()
                size = min(self._max_batch, -(-len(self._pending) // self._idle))
                taken = self._pending[:size]
                del self._pending[:size]
                batch = [p for p in taken if p.future.set_running_or_notify_cancel()]
                if batch:
                    self._idle -= 1
                    self.batches += 1
                    return batch
                while not self._pending and not self._closed:
                    self._cond.wait()
