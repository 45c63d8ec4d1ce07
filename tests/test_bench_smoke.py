"""``python -m bench --smoke`` runs end to end and writes a sane report.

The smoke bench streams a few seconds of speech through a real nats-server and worker, decodes the
same audio offline, and writes REPORT.md, plots and raw JSON. It uses dev-split corpus items, or
the English samples of the pytest-audioeval package where the corpus is absent, so it always runs.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from speech_corpus import corpus_dir
from worker_process import require_model

from bench import metrics
from bench.audio import Talk, Utterance, audioeval_samples, session
from bench.paths import REPO, bench_pythonpath
from bench.soak import latest_sustained
from bench.system import Clock, Emission, StreamResult, StreamSpec, TimedWord


def _positive(value: Any, what: str) -> None:
    assert isinstance(value, int | float), f"{what}: {value!r}"
    assert math.isfinite(value) and value > 0, f"{what}: {value!r}"


def _rate(value: Any, what: str) -> None:
    assert isinstance(value, int | float), f"{what}: {value!r}"
    assert 0.0 <= value <= 1.0, f"{what}: {value!r}"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_smoke_bench_writes_a_sane_report(tmp_path: Path) -> None:
    model = require_model()
    has_corpus = (corpus_dir() / "manifest.jsonl").is_file()
    if not has_corpus and importlib.util.find_spec("pytest_audioeval") is None:
        pytest.skip("neither the speech corpus nor pytest-audioeval's samples are available")
    out = tmp_path / "report"
    env = {**os.environ, "PYTHONPATH": bench_pythonpath()}
    command = [sys.executable, "-m", "bench", "--smoke", "--out", str(out), "--model", str(model)]
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=840)
    assert done.returncode == 0, done.stderr[-4000:]

    report = (out / "REPORT.md").read_text(encoding="utf-8")
    summary = json.loads((out / "raw" / "summary.json").read_text())
    for plot in ("latency_over_time.png", "latency_cdf.png", "cpu.png", "capacity.png"):
        assert (out / plot).stat().st_size > 1000, plot
    assert (out / "raw" / "main.json").is_file()
    assert summary["meta"]["model"]["sha256"] in report
    assert "## Against the budgets" in report and "## Capacity" in report
    assert "## CPU engines side by side" in report
    assert sorted(summary["engines"]) == ["fasterwhisper", "whisper"]
    for engine, sessions in summary["engines"].items():
        cpu = sessions["main"]["cpu"]
        _positive(cpu["ratio_streaming_over_offline"], f"{engine} CPU ratio")
        _positive(sessions["main"]["peak_rss_mb"], f"{engine} peak RSS")
        assert sessions["main"]["latency"]["segments_without_final"] == 0, engine

    main = summary["passes"]["main"]
    latency = main["latency"]
    assert latency["segments"] >= 2 and latency["segments_without_final"] == 0
    for field in ("final_after_speech_end", "first_text_after_onset", "word_commit_after_word_end"):
        for stat in ("p50", "p95"):
            _positive(latency[field][stat], f"{field} {stat}")
    cpu = main["cpu"]
    for field in ("streaming_cpu_per_audio_s", "offline_cpu_per_audio_s", "offline_wall_rtf"):
        _positive(cpu[field], field)
    _positive(cpu["ratio_streaming_over_offline"], "CPU ratio")
    for row in main["wer"]:
        _rate(row["streaming_wer"], f"{row['corpus']} streaming WER")
        _rate(row["offline_wer"], f"{row['corpus']} offline WER")
    overall = next(row for row in main["wer"] if row["corpus"] == "all")
    assert overall["streaming_wer"] <= overall["offline_wer"] + 0.25, overall

    _rate(main["stability"]["retracted_share"], "retracted share")
    assert main["stability"]["words_shown"] >= overall["words"] // 2, main["stability"]
    assert "run.py" in summary["system"]["started_as"], summary["system"]
    assert any(u["process"] == "capture" and u["cpu_s"] > 0 for u in main["usage"]), main["usage"]

    capacity = summary["capacity"]
    assert capacity["plan"]["levels"] == [1, 2]
    assert sorted(capacity["engines"]) == ["fasterwhisper", "whisper"]
    for engine, found in capacity["engines"].items():
        _positive(found["offline_cpu_per_audio_s"], f"{engine} offline CPU")
        _positive(found["compute_bound_streams"], f"{engine} compute bound")
        (ramp,) = found["ramps"]
        assert ramp["workers"] == 1 and "MAX_STREAMS" not in str(ramp["settings"]), ramp
        _ramp_stops_at_its_first_failing_level(ramp)
        first = ramp["levels"][0]
        _positive(first["latency"]["final_after_speech_end"]["p50"], f"{engine} capacity final")
        _positive(first["worker_cpu_per_audio_s"], f"{engine} capacity CPU")
        _positive(first["worker_peak_rss_mb"], f"{engine} capacity RSS")
        _rate(first["wer"]["streaming"], f"{engine} capacity streaming WER")
        _rate(first["wer"]["offline"], f"{engine} capacity offline WER")
        assert set(first["partials_shed"]) >= {"share", "status_reports_shedding"}
    assert "## Capacity: concurrent real-time streams" in report and "compute bound" in report


def _ramp_stops_at_its_first_failing_level(ramp: dict[str, Any]) -> None:
    levels = ramp["levels"]
    assert [lv["level"] for lv in levels] == [1, 2][: len(levels)] and levels, ramp
    failing = [lv["level"] for lv in levels if lv["failures"]]
    assert failing in ([], [levels[-1]["level"]]), failing
    assert len(levels) == 2 or failing, "the ramp stopped without a failing level"
    passed = [lv["level"] for lv in levels if not lv["failures"]]
    assert ramp["sustained_streams"] == max(passed, default=0), ramp
    assert (ramp["first_failing"] or {}).get("level") == (failing or [None])[0]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_short_soak_reports_latency_and_memory_of_every_process(tmp_path: Path) -> None:
    model = require_model()
    if not (corpus_dir() / "manifest.jsonl").is_file():
        pytest.importorskip("pytest_audioeval")
    (tmp_path / "raw").mkdir()  # a bench report there: the soak redraws it with its section
    shutil.copy(REPO / "docs" / "bench" / "raw" / "summary.json", tmp_path / "raw")
    command = [sys.executable, "-m", "bench.soak", "--out", str(tmp_path), "--model", str(model)]
    command += ["--minutes", "1", "--streams", "2", "--engine", "whisper", "--split", "dev"]
    command += ["--session-s", "25"]
    env = {**os.environ, "PYTHONPATH": bench_pythonpath()}
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=540)
    assert done.returncode == 0, done.stderr[-4000:]

    soak = json.loads((tmp_path / "soak" / "soak.json").read_text())
    assert soak["streams"] == 2 and soak["sessions"] >= 4, soak["sessions"]
    assert 0.9 < soak["minutes"] < 1.5 and soak["window_s"] == pytest.approx(soak["minutes"] * 20)
    for window in ("first", "last"):
        assert soak["final"][window]["n"] > 0, soak["final"]
        _positive(soak["final"][window]["p95"], f"soak final p95, {window} window")
    assert isinstance(soak["final"]["p95_change"], float)
    processes = set(soak["rss"])
    assert {"capture", "aggregator", "nats-server", "whisper-worker-1"} <= processes, processes
    for name, found in soak["rss"].items():
        _positive(found["first_mb"], f"{name} RSS")
        _positive(found["warm_mb"], f"{name} RSS after the warm-up")
        # growth is counted from the window after the warm-up (a third of a short soak)
        assert found["growth"] == pytest.approx(found["last_mb"] / found["warm_mb"] - 1)
        assert not found["exited"], (name, found)
    assert "Final p95, last window against the first" in (tmp_path / "soak" / "SOAK.md").read_text()
    assert "## Soak" in (tmp_path / "REPORT.md").read_text()


def test_the_soak_takes_its_level_from_the_newest_capacity_result(tmp_path: Path) -> None:
    def capacity(path: Path, sustained: int, workers: int = 1) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        ramp = {"workers": workers, "sustained_streams": sustained}
        path.write_text(json.dumps({"capacity": {"engines": {"fasterwhisper": {"ramps": [ramp]}}}}))

    capacity(tmp_path / "raw" / "summary.json", 12)
    capacity(tmp_path / "capacity" / "raw" / "summary.json", 16)
    os.utime(tmp_path / "raw" / "summary.json", (1e9, 1e9))
    assert latest_sustained(tmp_path, "fasterwhisper") == 16
    capacity(tmp_path / "raw" / "summary.json", 20, workers=2)
    assert latest_sustained(tmp_path, "fasterwhisper") == 16
    with pytest.raises(SystemExit):
        latest_sustained(tmp_path, "whisper")


def test_the_fallback_samples_read_as_16_khz_speech() -> None:
    pytest.importorskip("pytest_audioeval")

    samples = audioeval_samples()
    assert len(samples) >= 2
    for sample in samples:
        assert sample.pcm.dtype.name == "int16" and 0.5 < sample.duration_s < 30
        assert sample.text and int(abs(sample.pcm.astype("int32")).max()) > 1000


def test_latencies_are_measured_against_the_capture_clock() -> None:
    speech = [Utterance(f"u{i}", "c", "hello world", np.ones(16_000 * 2, np.int16)) for i in (1, 2)]
    talk_session = session("s", [Talk("t", "c", tuple(speech))], gap_s=1.0)
    first, second = talk_session.speech
    clock = Clock([(n, 1000.0 + n / 16_000) for n in range(0, len(talk_session.audio), 1600)])

    def at(sample: int) -> float:
        return 1000.0 + sample / 16_000

    word_end = first.end - 8000
    emissions = [
        Emission(
            "partial", "a", first.start, first.start + 9600, "hello", at(first.start) + 0.8, 1
        ),
        Emission(
            "final",
            "a",
            first.start,
            first.end,
            "Hello, world.",
            at(first.end) + 1.2,
            words=(
                TimedWord("Hello,", first.start, first.start + 9600),
                TimedWord("world.", first.start + 9600, word_end),
            ),
        ),
        Emission("final", "b", second.start, second.end, "hello world", at(second.end) + 0.9),
    ]
    result = StreamResult(StreamSpec("s", talk_session), clock, emissions, closed=True)

    one, two = metrics.segment_records(result)
    assert one.first_partial_s == pytest.approx(0.8) and one.final_s == pytest.approx(1.2)
    assert two.first_partial_s is None and two.first_text_s == pytest.approx(2.4 + 0.9)
    assert two.final_s == pytest.approx(0.9)
    hello, world = metrics.word_records(result)
    assert hello.first_seen_s < hello.commit_s
    assert world.first_seen_s == world.commit_s == pytest.approx(1.2 + 0.5)
    (row, overall) = metrics.wer_by_corpus(metrics.talk_scores(result, {"t": "hello word"}))
    assert row["streaming_wer"] == 0.0 and overall["offline_wer"] == pytest.approx(3 / 4)


def test_an_utterance_is_timed_by_the_final_reaching_its_end_whatever_the_vad_cut() -> None:
    speech = [Utterance("u1", "c", "one two three four", np.ones(16_000 * 4, np.int16))]
    talk_session = session("s", [Talk("t", "c", tuple(speech))], gap_s=1.0)
    (span,) = talk_session.speech
    clock = Clock([(n, 1000.0 + n / 16_000) for n in range(0, len(talk_session.audio), 1600)])

    def at(sample: int) -> float:
        return 1000.0 + sample / 16_000

    middle = span.start + 2 * 16_000
    vad_end = span.end - 4_000  # the real VAD ended speech 0.25 s before the padded end
    emissions = [
        Emission("final", "a", span.start, middle, "one two", at(middle) + 0.7),
        Emission("partial", "b", middle, middle + 8000, "three", at(middle) + 1.0, 1),
        Emission("final", "b", middle, vad_end, "three four", at(vad_end) + 0.5),
    ]
    result = StreamResult(StreamSpec("s", talk_session), clock, emissions, closed=True)

    (record,) = metrics.segment_records(result)
    assert record.final_s == pytest.approx(0.5)
    assert record.forced_final_s == (pytest.approx(0.7),)
    assert record.finals == 2 and record.ends_with_last_word
    shown = metrics.displayed_transcripts(result)
    assert shown == ["one two", "one two three", "one two three four"]
