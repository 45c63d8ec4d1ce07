"""The contract between a scenario and a system under test, and process accounting from /proc.

A system (EchoStream with one engine's workers here; a peer such as WhisperLiveKit) takes a
set of streams, plays each at real time with its speech boundaries, and returns for each the
transcript events it emitted (partials and finals, wall-clock emission times) and the wall-clock
capture time of its audio (``Clock``). Every metric is computed from those alone, the same way
for every system.
"""

from __future__ import annotations

import bisect
import os
import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from bench.audio import RATE, Session

TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class StreamSpec:
    """One stream of a pass: a source's session, started ``start_delay_s`` after the pass."""

    stream_id: str
    session: Session
    start_delay_s: float = 0.0


@dataclass(frozen=True)
class TimedWord:
    text: str
    start_sample: int
    end_sample: int


@dataclass(frozen=True)
class Emission:
    """A transcript event as the system published it; samples are on the stream's clock."""

    kind: Literal["partial", "final"]
    segment_id: str
    start_sample: int
    end_sample: int
    text: str
    emitted_at: float
    revision: int = 0
    words: tuple[TimedWord, ...] = ()


class Clock:
    """Wall-clock capture time of any sample, from the chunks' first samples and capture times."""

    def __init__(self, chunks: Sequence[tuple[int, float]]) -> None:
        ordered = sorted(chunks)
        self.firsts = [first for first, _ in ordered]
        self.times = [captured for _, captured in ordered]

    def __len__(self) -> int:
        return len(self.firsts)

    def at(self, sample: int) -> float | None:
        index = bisect.bisect_right(self.firsts, sample) - 1
        if index < 0:
            return None
        return self.times[index] + (sample - self.firsts[index]) / RATE

    @property
    def started_at(self) -> float:
        return self.times[0] if self.times else 0.0


@dataclass
class StreamResult:
    spec: StreamSpec
    clock: Clock
    emissions: list[Emission]
    closed: bool  # the system finished the stream (its job was completed) within the drain time


@dataclass
class ProcessUsage:
    """CPU seconds (user + system, all threads) and memory of one process over a pass."""

    name: str
    pid: int
    cpu_s: float = 0.0
    rss_mb: float = 0.0
    peak_rss_mb: float = 0.0


@dataclass
class PassResult:
    """What a system did for one pass (one set of concurrent streams)."""

    system: str
    streams: list[StreamResult]
    wall_s: float
    usage: list[ProcessUsage]  # [0] is the transcribing process
    machine_busy_cpu_s: float  # every process on the machine, from /proc/stat
    load_avg: tuple[float, float]  # 1-minute load average before and after
    statuses: list[dict[str, float | int | str]] = field(default_factory=list)
    drained: bool = True
    engine_metrics: dict[str, float] = field(default_factory=dict)  # system-specific counters
    engine_processes: int = 1  # usage[:engine_processes] are the transcribing processes

    @property
    def audio_s(self) -> float:
        return sum(s.spec.session.duration_s for s in self.streams)

    @property
    def engine_cpu_s(self) -> float:
        return sum(u.cpu_s for u in self.usage[: self.engine_processes])

    @property
    def engine_peak_rss_mb(self) -> float:
        return sum(u.peak_rss_mb for u in self.usage[: self.engine_processes])


class StreamingSystem(Protocol):
    """A streaming recognizer started as real processes, driven at real time."""

    name: str

    async def start(self) -> None: ...

    async def run(self, specs: Sequence[StreamSpec]) -> PassResult: ...

    async def stop(self) -> None: ...

    def describe(self) -> dict[str, object]:
        """Model, threads and settings, for the report."""
        ...


# -- /proc accounting ----------------------------------------------------------------------------


def process_cpu_s(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def process_memory_mb(pid: int) -> tuple[float, float]:
    """Resident and peak resident memory (VmRSS, VmHWM) in MB."""
    found = {"VmRSS": 0.0, "VmHWM": 0.0}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in found:
            found[key] = int(value.split()[0]) / 1024
    return found["VmRSS"], found["VmHWM"]


def machine_busy_s() -> float:
    """CPU seconds every process on the machine has used since boot (all cores)."""
    with open("/proc/stat") as fh:
        values = [int(v) for v in fh.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values[:8]
    return (user + nice + system + irq + softirq + steal) / TICKS


def load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def self_cpu_s() -> float:
    """CPU seconds of this process (the bench's client side), for the noise accounting."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Meter:
    """CPU of some processes and of the whole machine between ``start`` and ``stop``."""

    def __init__(self, processes: dict[str, int]) -> None:
        self._processes = processes
        self._cpu0: dict[str, float] = {}
        self._busy0 = 0.0
        self._wall0 = 0.0
        self._load0 = 0.0

    def start(self) -> None:
        self._cpu0 = {name: process_cpu_s(pid) for name, pid in self._processes.items()}
        self._busy0 = machine_busy_s()
        self._wall0 = time.monotonic()
        self._load0 = load_average()

    def stop(self) -> tuple[list[ProcessUsage], float, float, tuple[float, float]]:
        """Per-process usage, machine busy CPU-s, wall seconds, load average before/after."""
        usage = []
        for name, pid in self._processes.items():
            rss, peak = process_memory_mb(pid)
            cpu = process_cpu_s(pid) - self._cpu0[name]
            usage.append(ProcessUsage(name, pid, cpu, rss, peak))
        busy = machine_busy_s() - self._busy0
        return usage, busy, time.monotonic() - self._wall0, (self._load0, load_average())
