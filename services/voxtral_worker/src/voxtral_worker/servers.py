"""The vLLM servers a worker streams to, each with a bounded number of concurrent streams."""

from __future__ import annotations

import time
from dataclasses import dataclass

from echostream_shared import messages as m


@dataclass
class _Server:
    url: str
    streams: int = 0
    error: str = ""
    error_until: float = 0.0
    failing: int = 0


class ServerPool:
    """Leases one stream slot on the least busy healthy server; remembers what went wrong.

    A configuration error (unknown model, refused key) marks a server ``error`` for
    ``error_hold_s``, and the worker takes no jobs meanwhile; failed connections make it
    ``degraded`` until one succeeds.
    """

    def __init__(self, urls: list[str], max_streams: int, error_hold_s: float = 30.0) -> None:
        self._servers = [_Server(url) for url in urls]
        self._max_streams = max_streams
        self._error_hold_s = error_hold_s

    def capacity(self) -> int:
        """Slots on servers not known to be misconfigured."""
        now = time.monotonic()
        return self._max_streams * sum(1 for s in self._servers if s.error_until <= now)

    def lease(self) -> str:
        """A server's URL with a free slot; the caller must ``release`` it."""
        now = time.monotonic()
        free = [s for s in self._servers if s.streams < self._max_streams]
        if not free:
            raise RuntimeError("every vLLM server is at its stream limit")
        best = min(free, key=lambda s: (s.error_until > now, s.failing > 0, s.streams))
        best.streams += 1
        return best.url

    def release(self, url: str) -> None:
        self._server(url).streams -= 1

    def streams(self, url: str) -> int:
        return self._server(url).streams

    def connected(self, url: str) -> None:
        server = self._server(url)
        server.failing = 0

    def connection_failed(self, url: str) -> None:
        self._server(url).failing += 1

    def misconfigured(self, url: str, reason: str) -> None:
        server = self._server(url)
        server.error = reason
        server.error_until = time.monotonic() + self._error_hold_s

    def condition(self) -> tuple[m.WorkerState, str]:
        now = time.monotonic()
        broken = [s for s in self._servers if s.error_until > now]
        if broken and len(broken) == len(self._servers):
            return "error", "; ".join(f"{s.url}: {s.error}" for s in broken)
        failing = [s for s in self._servers if s.failing]
        problems = [f"{s.url}: {s.error}" for s in broken]
        problems += [f"{s.url}: {s.failing} failed connection(s)" for s in failing]
        return ("degraded" if failing else "ok"), "; ".join(problems)

    def _server(self, url: str) -> _Server:
        return next(s for s in self._servers if s.url == url)
