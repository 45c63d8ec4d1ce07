"""A worker's measured load: its process CPU (used, and waited for) against the cores it may use,
the audio its streams took in, and the partials they shed, over a recent window."""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
THREADS = Path("/proc/self/task")


def usable_cores(cpu_max: Path = CGROUP_CPU_MAX) -> float:
    """The CPUs this process may run on, lowered by a cgroup v2 CPU quota (a container's
    ``--cpus``) when there is one."""
    cores = float(len(os.sched_getaffinity(0)))
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            cores = min(cores, int(quota) / int(period))
    except (OSError, ValueError):
        pass
    return max(cores, 0.01)


def run_queue_wait_s(threads: Path = THREADS) -> float:
    """Seconds this process's threads spent ready to run but waiting for a core
    (``/proc/<pid>/task/*/schedstat``); 0 where the kernel does not say."""
    waited_ns = 0
    for stat in threads.glob("*/schedstat"):
        try:
            waited_ns += int(stat.read_text().split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return waited_ns / 1e9


@dataclass(frozen=True, slots=True)
class PartialTally:
    """Counts since an engine started; a streaming engine that never sheds reports zeros.

    ``shed_lag`` and ``shed_budget`` count the partials that were due and not decoded because
    the stream was behind real time, or its partial CPU budget was spent.
    """

    decoded: int = 0
    shed_lag: int = 0
    shed_budget: int = 0

    def __add__(self, other: PartialTally) -> PartialTally:
        return PartialTally(
            self.decoded + other.decoded,
            self.shed_lag + other.shed_lag,
            self.shed_budget + other.shed_budget,
        )

    def __sub__(self, other: PartialTally) -> PartialTally:
        return PartialTally(
            self.decoded - other.decoded,
            self.shed_lag - other.shed_lag,
            self.shed_budget - other.shed_budget,
        )

    @property
    def due(self) -> int:
        return self.decoded + self.shed_lag + self.shed_budget


@dataclass(frozen=True, slots=True)
class _Sample:
    at: float
    cpu_s: float
    wait_s: float
    audio_s: float
    partials: PartialTally


class LoadMeter:
    """Samples the process's CPU time, the audio taken in and the partial tally; answers over the
    last ``window_s``."""

    def __init__(
        self,
        window_s: float = 10.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        cpu_time: Callable[[], float] = time.process_time,
        wait_time: Callable[[], float] = run_queue_wait_s,
    ) -> None:
        self.window_s = window_s
        self._clock = clock
        self._cpu_time = cpu_time
        self._wait_time = wait_time
        self._samples: deque[_Sample] = deque()
        self._first_audio: _Sample | None = None

    def record(self, audio_s: float, partials: PartialTally) -> None:
        """``audio_s``: seconds of audio every stream of the process took in so far, finished
        ones included; ``partials``: the engine's tally so far."""
        now = self._clock()
        sample = _Sample(now, self._cpu_time(), self._wait_time(), audio_s, partials)
        self._samples.append(sample)
        if self._first_audio is None and audio_s > 0:
            self._first_audio = sample
        while len(self._samples) > 2 and now - self._samples[1].at >= self.window_s:
            self._samples.popleft()

    @property
    def span_s(self) -> float:
        return self._samples[-1].at - self._samples[0].at if len(self._samples) > 1 else 0.0

    def cpu_rate(self) -> float:
        """CPU-seconds the process spent per wall second (1.0: one core busy)."""
        if self.span_s <= 0:
            return 0.0
        return (self._samples[-1].cpu_s - self._samples[0].cpu_s) / self.span_s

    def wait_rate(self) -> float:
        """Seconds per wall second the process's threads were ready but waited for a core: its
        demand beyond what it got, from other processes or from its own threads."""
        if self.span_s <= 0:
            return 0.0
        return max(0.0, self._samples[-1].wait_s - self._samples[0].wait_s) / self.span_s

    def cpu_per_audio_s(self, min_audio_s: float = 1.0) -> float | None:
        """CPU-seconds per second of audio taken in: what one more real-time stream would cost.

        The larger of the window's figure and the one since the first audio: a window of
        silences, or of streams that have not reached their first final yet, would promise
        streams for less than they cost. None until ``min_audio_s`` of audio came in.
        """
        costs = [
            _cost(first, self._samples[-1], min_audio_s)
            for first in (self._samples[0], self._first_audio)
            if first is not None and self._samples
        ]
        known = [cost for cost in costs if cost is not None]
        return max(known) if known else None

    def audio_seen_s(self) -> float:
        """Audio taken in since the first, the evidence behind ``cpu_per_audio_s``."""
        if self._first_audio is None or not self._samples:
            return 0.0
        return self._samples[-1].audio_s - self._first_audio.audio_s

    def partials(self) -> PartialTally:
        """Partials due within the window, by what became of them."""
        if len(self._samples) < 2:
            return PartialTally()
        return self._samples[-1].partials - self._samples[0].partials

    def partials_total(self) -> PartialTally:
        return self._samples[-1].partials if self._samples else PartialTally()


def _cost(first: _Sample, last: _Sample, min_audio_s: float) -> float | None:
    audio = last.audio_s - first.audio_s
    return (last.cpu_s - first.cpu_s) / audio if audio >= min_audio_s else None


class LagHistory:
    """Each stream's lag over the last ``window_s``, to tell a worker falling behind from lag
    that passes: a final's decode leaves the other streams a second or two behind for a moment,
    and a stream taken from the queue starts behind by as long as it waited, then catches up."""

    def __init__(self, window_s: float = 5.0, catching_up_s: float = 1.0) -> None:
        self.window_s = window_s
        self.catching_up_s = catching_up_s
        self._lags: dict[object, deque[tuple[float, float]]] = {}

    def record(self, key: object, now: float, lag_s: float) -> None:
        lags = self._lags.setdefault(key, deque())
        lags.append((now, lag_s))
        while len(lags) > 1 and now - lags[1][0] >= self.window_s:
            lags.popleft()

    def forget(self, key: object) -> None:
        self._lags.pop(key, None)

    def behind_s(self) -> float:
        """The largest lag a stream kept all through the window, among streams not catching up.

        A stream catches up when the least lag of the window's second half is ``catching_up_s``
        below the first half's; least lags, because a decode makes lag jump for a moment.
        """
        floors = []
        for lags in self._lags.values():
            middle = lags[0][0] + (lags[-1][0] - lags[0][0]) / 2
            early = min(lag for at, lag in lags if at <= middle)
            late = min(lag for at, lag in lags if at >= middle)
            if late > early - self.catching_up_s:
                floors.append(min(early, late))
        return max(floors, default=0.0)
