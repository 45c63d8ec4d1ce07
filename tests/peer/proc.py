"""CPU accounting from /proc: one process (all its threads, and children it has reaped) and the
whole machine, so a run's numbers can be judged against what else the machine was doing."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    """utime + stime + cutime + cstime of ``pid``, in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name may hold spaces; the fields after its closing parenthesis do not.
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
    return (utime + stime + cutime + cstime) / TICKS


def peak_rss_mb(pid: int) -> float | None:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


@dataclass(frozen=True)
class MachineTimes:
    busy_s: float
    total_s: float


def machine_times() -> MachineTimes:
    """Busy and total CPU seconds over all cores since boot (first line of /proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    # guest time is already counted in user and nice
    total = sum(values[:8])
    return MachineTimes((total - idle) / TICKS, total / TICKS)


@dataclass(frozen=True)
class Snapshot:
    server_cpu_s: float
    runner_cpu_s: float
    machine: MachineTimes

    @staticmethod
    def take(server_pid: int) -> Snapshot:
        return Snapshot(process_cpu_s(server_pid), process_cpu_s(os.getpid()), machine_times())


def usage(start: Snapshot, end: Snapshot, wall_s: float, audio_s: float) -> dict[str, float]:
    """The server's CPU per audio second and the load from everything else, over one window."""
    server = end.server_cpu_s - start.server_cpu_s
    runner = end.runner_cpu_s - start.runner_cpu_s
    busy = end.machine.busy_s - start.machine.busy_s
    cores = os.cpu_count() or 1
    other = max(0.0, busy - server - runner)
    return {
        "server_cpu_s": server,
        "cpu_s_per_audio_s": server / audio_s if audio_s > 0 else 0.0,
        "wall_s": wall_s,
        "runner_cpu_s": runner,
        "machine_busy_cpu_s": busy,
        "machine_cores": float(cores),
        "other_processes_cpu_s": other,
        # mean number of cores other processes kept busy during the run
        "other_processes_cores": other / wall_s if wall_s > 0 else 0.0,
    }


class Sampler:
    """Server and other-process core usage every ``period_s``, on a background thread."""

    def __init__(self, server_pid: int, period_s: float = 5.0) -> None:
        self.server_pid = server_pid
        self.period_s = period_s
        self.samples: list[dict[str, float]] = []
        self._started = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)

    def start(self) -> None:
        self._started = time.monotonic()
        self._thread.start()

    def stop(self) -> list[dict[str, float]]:
        self._stop.set()
        self._thread.join(timeout=5)
        return self.samples

    def _run(self) -> None:
        last, last_t = Snapshot.take(self.server_pid), time.monotonic()
        while not self._stop.wait(self.period_s):
            try:
                now, now_t = Snapshot.take(self.server_pid), time.monotonic()
            except FileNotFoundError:
                return  # the server is gone
            window = usage(last, now, now_t - last_t, 0.0)
            self.samples.append(
                {
                    "t": now_t - self._started,
                    "server_cores": window["server_cpu_s"] / window["wall_s"],
                    "other_cores": window["other_processes_cores"],
                }
            )
            last, last_t = now, now_t
