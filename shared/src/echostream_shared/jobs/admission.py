"""Whether a worker takes another job: from its measured load, not from a fixed count.

A job is taken while the streams keep up: no stream stayed more than ``admit_lag_s`` behind real
time (where batch engines start shedding partials) all through the last seconds, unless it is
catching up (a job taken from the queue starts as far behind as it waited there; refusing others
for that would only make them wait longer). And while the process's CPU use plus what one more
stream costs stays within ``cpu_share`` of the cores it may use. A stream's cost is the
CPU-seconds per audio second the process spent (over the window, or since its first audio if that
is more); until ``learn_audio_s`` of audio has shown what streams cost here (a stream's first
final comes seconds after it starts), a stream is assumed to cost at least
``prior_cpu_per_audio_s`` (measured when the engine started, see ``segmented.calibration``, or
given). A stream admitted within the last ``young_s`` (the meter's window) has shown only part of
its cost in the measured CPU use: the part of the window it has run, so it is counted again for
the rest; after each admission the worker waits ``settle_s``.

The time the process's threads waited for a core while ready to run tells a machine that other
processes keep busy: there the scheduler gives the worker less than it asks, and the wait shows it
at once, the lag only seconds later. Some wait is normal (decoder threads and the event loop share
two cores with the rest of the system: at 6 streams on an otherwise idle 2-core machine the
threads waited 0.6 cores' worth while running 0.8), so the machine counts as crowded only when the
threads waited longer than they ran.
"""

from __future__ import annotations

from dataclasses import dataclass

from echostream_shared.jobs.load import LoadMeter


@dataclass(frozen=True)
class AdmissionOptions:
    admit_lag_s: float = 1.0
    cpu_share: float = 0.75
    settle_s: float = 0.3
    young_s: float = 10.0
    prior_cpu_per_audio_s: float = 0.25
    """whisper.cpp's streaming cost on tiny.en (0.18) with a margin; faster-whisper costs less."""
    learn_audio_s: float = 60.0
    min_crowded_wait: float = 0.1
    """Cores' worth of waiting for a core below which no machine counts as crowded."""


@dataclass(frozen=True)
class Decision:
    admit: bool
    reason: str = ""
    predicted_cpu: float = 0.0
    """Cores the process would use with one more stream, as far as the meter can tell."""


class Admission:
    def __init__(self, options: AdmissionOptions, cores: float) -> None:
        self.options = options
        self.cores = cores
        self._admitted_at: list[float] = []

    def admitted(self, now: float) -> None:
        self._admitted_at.append(now)

    def decide(
        self, *, streams: int, cap: int, behind_s: float, meter: LoadMeter, now: float
    ) -> Decision:
        options = self.options
        self._admitted_at = [at for at in self._admitted_at if now - at < options.young_s]
        if streams >= cap:
            return Decision(False, f"at its stream cap ({cap})")
        if streams == 0:
            return Decision(True)
        if self._admitted_at and now - self._admitted_at[-1] < options.settle_s:
            return Decision(False, "settling after the last admission")
        if behind_s > options.admit_lag_s:
            return Decision(False, f"streams stay {behind_s:.1f} s behind real time")
        cost = meter.cpu_per_audio_s() or 0.0
        if meter.audio_seen_s() < options.learn_audio_s:
            cost = max(cost, options.prior_cpu_per_audio_s)
        young = self._admitted_at[-streams:]
        unseen = sum(1 - (now - at) / options.young_s for at in young)
        used, wait = meter.cpu_rate(), meter.wait_rate()
        predicted = used + (1 + unseen) * cost
        if wait > max(used, options.min_crowded_wait):
            reason = f"crowded: its threads waited {wait:.2f} cores for a core, ran {used:.2f}"
            return Decision(False, reason, predicted)
        if predicted > options.cpu_share * self.cores:
            reason = f"CPU: {predicted:.2f} of {self.cores:g} cores with one more"
            return Decision(False, reason, predicted)
        return Decision(True, predicted_cpu=predicted)
