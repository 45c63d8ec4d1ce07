"""Process CPU time shared out among the stages that ran at the same time.

The process clock cannot tell apart the work of two decoder threads (CTranslate2 computes on its
own threads), so a stage timed alone would also be charged the other's work while they overlap.
The ledger splits the CPU time of every interval equally among the stages open in it: the charges
add up to the process CPU time spent while any stage was open.
"""

from __future__ import annotations

import itertools
import threading
import time


class CpuLedger:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[int, float] = {}
        self._tokens = itertools.count()
        self._last = time.process_time()

    def start(self) -> int:
        """Opens a stage; ``stop`` with the token returns its CPU seconds."""
        with self._lock:
            self._settle()
            token = next(self._tokens)
            self._open[token] = 0.0
            return token

    def stop(self, token: int) -> float:
        with self._lock:
            self._settle()
            return self._open.pop(token)

    def _settle(self) -> None:
        now = time.process_time()
        if self._open:
            share = (now - self._last) / len(self._open)
            for token in self._open:
                self._open[token] += share
        self._last = now
