"""The admission rules on given measurements (the worker tests run them on real load), and the\nreference decode that prices streams before they have shown their cost."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from echostream_shared.jobs.admission import Admission, AdmissionOptions
from echostream_shared.jobs.load import LagHistory, LoadMeter, PartialTally, usable_cores
from echostream_shared.segmented.calibration import REFERENCE_S, reference_cost
from echostream_shared.segmented.decoding import Decoded, Purpose


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.cpu = 0.0
        self.wait = 0.0

    def wall(self) -> float:
        return self.now

    def process(self) -> float:
        return self.cpu

    def waited(self) -> float:
        return self.wait


def meter_at(
    cores_busy: float, cpu_per_audio_s: float, waiting: float = 0.0
) -> tuple[LoadMeter, Clock]:
    """A meter that saw the process busy on ``cores_busy`` cores for 10 s at the given cost, its
    threads ``waiting`` for a core that many seconds per second."""
    clock = Clock()
    meter = LoadMeter(10.0, clock=clock.wall, cpu_time=clock.process, wait_time=clock.waited)
    for second in range(11):
        clock.now = float(second)
        clock.cpu = cores_busy * second
        clock.wait = waiting * second
        meter.record(
            audio_s=second * cores_busy / cpu_per_audio_s,
            partials=PartialTally(),
        )
    return meter, clock


def test_cpu_headroom_admits_until_one_more_stream_would_pass_the_share() -> None:
    options = AdmissionOptions(cpu_share=0.75, settle_s=0.0, young_s=0.0, learn_audio_s=0.0)
    admission = Admission(options, cores=2.0)
    roomy, clock = meter_at(cores_busy=1.0, cpu_per_audio_s=0.2)
    decision = admission.decide(streams=5, cap=64, behind_s=0.0, meter=roomy, now=clock.now)
    assert decision.admit and abs(decision.predicted_cpu - 1.2) < 1e-9
    full, clock = meter_at(cores_busy=1.4, cpu_per_audio_s=0.2)
    decision = admission.decide(streams=7, cap=64, behind_s=0.0, meter=full, now=clock.now)
    assert not decision.admit and "CPU" in decision.reason


def test_a_machine_is_crowded_when_the_threads_wait_for_a_core_longer_than_they_run() -> None:
    options = AdmissionOptions(cpu_share=0.75, settle_s=0.0, young_s=0.0, learn_audio_s=0.0)
    admission = Admission(options, cores=2.0)
    alone, clock = meter_at(cores_busy=0.4, cpu_per_audio_s=0.2)
    assert admission.decide(streams=2, cap=64, behind_s=0.0, meter=alone, now=clock.now).admit
    sharing, clock = meter_at(cores_busy=0.8, cpu_per_audio_s=0.2, waiting=0.6)
    assert admission.decide(streams=2, cap=64, behind_s=0.0, meter=sharing, now=clock.now).admit
    crowded, clock = meter_at(cores_busy=0.4, cpu_per_audio_s=0.2, waiting=1.0)
    decision = admission.decide(streams=2, cap=64, behind_s=0.0, meter=crowded, now=clock.now)
    assert not decision.admit and "waited 1.00 cores" in decision.reason


def test_until_streams_have_shown_their_cost_one_is_assumed_to_cost_the_prior() -> None:
    meter, clock = meter_at(cores_busy=0.1, cpu_per_audio_s=0.05)  # 20 s of audio seen
    options = AdmissionOptions(cpu_share=0.3, settle_s=0.0, prior_cpu_per_audio_s=0.25)
    learning = Admission(replace(options, learn_audio_s=60.0), cores=1.0)
    assert not learning.decide(streams=2, cap=64, behind_s=0.0, meter=meter, now=clock.now).admit
    learned = Admission(replace(options, learn_audio_s=10.0), cores=1.0)
    decision = learned.decide(streams=2, cap=64, behind_s=0.0, meter=meter, now=clock.now)
    assert decision.admit and abs(decision.predicted_cpu - 0.15) < 1e-9


def test_young_streams_count_for_the_part_of_the_window_they_have_not_run() -> None:
    options = AdmissionOptions(cpu_share=0.75, settle_s=1.5, young_s=10.0, learn_audio_s=0.0)
    admission = Admission(options, cores=2.0)
    meter, clock = meter_at(cores_busy=1.0, cpu_per_audio_s=0.2)
    for at in (1.0, 3.0, 5.0):
        admission.admitted(at)
    assert not admission.decide(streams=4, cap=64, behind_s=0.0, meter=meter, now=5.5).admit
    decision = admission.decide(streams=4, cap=64, behind_s=0.0, meter=meter, now=6.5)
    # the window has seen 55, 35 and 15 % of the three young streams' cost
    assert not decision.admit and abs(decision.predicted_cpu - (1.0 + 2.95 * 0.2)) < 1e-9
    decision = admission.decide(streams=4, cap=64, behind_s=0.0, meter=meter, now=9.0)
    assert decision.admit and abs(decision.predicted_cpu - (1.0 + 2.2 * 0.2)) < 1e-9
    decision = admission.decide(streams=4, cap=64, behind_s=0.0, meter=meter, now=16.0)
    assert decision.admit and abs(decision.predicted_cpu - 1.2) < 1e-9, "all shown by now"


def test_the_reference_decode_is_priced_by_its_cheapest_run() -> None:
    burns = iter([0.3, 0.05, 0.1])

    class Busy:
        async def transcribe(
            self, audio: npt.NDArray[np.float32], *, purpose: Purpose, prompt: str | None = None
        ) -> Decoded:
            assert purpose == "final" and len(audio) == REFERENCE_S * 16_000
            until = time.process_time() + next(burns)
            while time.process_time() < until:
                pass
            return Decoded("", (), "en", None, 0.0, 0.0, len(audio) / 16_000, 0, purpose)

    cost = asyncio.run(reference_cost(Busy(), runs=3))
    assert 0.05 / REFERENCE_S <= cost < 0.08 / REFERENCE_S


def test_lag_stops_admission_the_cap_holds_and_an_idle_worker_always_admits() -> None:
    admission = Admission(AdmissionOptions(admit_lag_s=1.0, settle_s=0.0), cores=2.0)
    meter, clock = meter_at(cores_busy=0.2, cpu_per_audio_s=0.1)
    assert not admission.decide(streams=2, cap=64, behind_s=1.2, meter=meter, now=clock.now).admit
    assert not admission.decide(streams=2, cap=2, behind_s=0.0, meter=meter, now=clock.now).admit
    busy, clock = meter_at(cores_busy=2.0, cpu_per_audio_s=1.0)
    assert admission.decide(streams=0, cap=64, behind_s=9.0, meter=busy, now=clock.now).admit


def test_lag_that_passes_or_falls_is_not_falling_behind() -> None:
    history = LagHistory(window_s=5.0, catching_up_s=1.0)
    for tick in range(60):  # 6 s: a final's decode puts this stream 1.8 s behind every 2 s
        history.record("spiky", tick / 10, 1.8 if tick % 20 < 5 else 0.2)
        history.record("from the queue", tick / 10, 30.0 - tick / 10 * 4)
    assert history.behind_s() == 0.2
    for tick in range(60, 120):
        history.record("steady", tick / 10, 1.5 + (tick - 60) / 100)
    assert 1.5 <= history.behind_s() < 2.2
    history.forget("steady")
    assert history.behind_s() == 0.2


def test_usable_cores_follow_a_cgroup_quota(tmp_path: Path) -> None:
    quota = tmp_path / "cpu.max"
    quota.write_text("50000 100000\n")
    assert usable_cores(quota) == 0.5
    quota.write_text("max 100000\n")
    assert usable_cores(quota) == usable_cores(tmp_path / "absent") >= 1
