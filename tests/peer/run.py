"""One measured run of the peer on one WAV: server up, audio played at real time, offline word
clock, and the result as a JSON-ready dict (schema ``echostream.peer/1``, see ``__init__``)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
import wave
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from speech_corpus import normalize, read_wav, wer

from peer import proc
from peer.paths import OFFLINE_SCRIPT, WLK_VERSION, PeerUnavailable, model_dir, peer_python
from peer.server import RunningServer, ServerOptions, running_server
from peer.stream import CHUNK_S, DEFAULT_MAX_DRAIN_S, RATE, Recording, play
from peer.words import ClockWord, by_thirds, summary, word_timings

SCHEMA = "echostream.peer/1"
WARMUP_S = 10.0


def load_audio(path: Path) -> npt.NDArray[np.int16]:
    """A 16 kHz mono PCM16 WAV, or ValueError saying what is wrong with it."""
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    try:
        pcm = read_wav(path)
    except wave.Error as error:
        raise ValueError(f"{path}: not a PCM WAV file ({error})") from error
    except EOFError as error:
        raise ValueError(f"{path}: truncated WAV file") from error
    if pcm.size == 0:
        raise ValueError(f"{path}: no audio")
    return pcm


def write_wav(path: Path, pcm: npt.NDArray[np.int16]) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(pcm.astype("<i2").tobytes())


def offline_clock(wav: Path, model: Path, threads: int) -> dict[str, Any]:
    """The peer interpreter's offline faster-whisper pass (``offline_words.py``)."""
    done = subprocess.run(
        [str(peer_python()), str(OFFLINE_SCRIPT), str(wav), str(model)],
        capture_output=True,
        text=True,
        env={"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(threads), "PATH": "/usr/bin:/bin"},
        timeout=1800,
    )
    if done.returncode != 0:
        raise PeerUnavailable(f"offline faster-whisper pass failed:\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def run_peer(
    audio: Path,
    reference: str | None = None,
    *,
    threads: int = 2,
    min_chunk_size_s: float | None = None,
    vac: bool = True,
    offline: bool = True,
    log_dir: Path | None = None,
    max_drain_s: float = DEFAULT_MAX_DRAIN_S,
) -> dict[str, Any]:
    """Measure WhisperLiveKit (LocalAgreement, faster-whisper, tiny.en) on a WAV file.

    Raises ValueError for unusable audio and PeerUnavailable when the peer cannot run here.
    """
    return run_peer_pcm(
        load_audio(audio),
        reference,
        label=str(audio),
        threads=threads,
        min_chunk_size_s=min_chunk_size_s,
        vac=vac,
        offline=offline,
        log_dir=log_dir,
        max_drain_s=max_drain_s,
    )


def run_peer_pcm(
    pcm: npt.NDArray[np.int16],
    reference: str | None = None,
    *,
    label: str = "<pcm>",
    threads: int = 2,
    min_chunk_size_s: float | None = None,
    vac: bool = True,
    offline: bool = True,
    log_dir: Path | None = None,
    max_drain_s: float = DEFAULT_MAX_DRAIN_S,
) -> dict[str, Any]:
    """``run_peer`` on 16 kHz mono int16 samples (a bench session's audio, say)."""
    if pcm.ndim != 1 or pcm.dtype != np.int16 or pcm.size == 0:
        raise ValueError(f"{label}: expected non-empty 1-D int16 samples at 16 kHz")
    if reference is not None and not normalize(reference):
        raise ValueError("the reference transcript is empty (no words to score against)")
    model = model_dir()
    audio_s = len(pcm) / RATE
    with tempfile.TemporaryDirectory(prefix="peer-") as scratch:
        wav = Path(scratch) / "audio.wav"
        write_wav(wav, pcm)
        warmup = Path(scratch) / "warmup.wav"
        write_wav(warmup, pcm[: int(WARMUP_S * RATE)])
        logs = log_dir or Path(scratch)
        logs.mkdir(parents=True, exist_ok=True)
        options = ServerOptions(model, warmup, threads, min_chunk_size_s, vac)
        with running_server(options, logs / "whisperlivekit.log") as server:
            recording, cpu = _measure(server, pcm, audio_s, max_drain_s)
            rss = proc.peak_rss_mb(server.pid)
        if log_dir is not None:
            _write_messages(recording, log_dir / "messages.jsonl")
        clock = offline_clock(wav, model, threads) if offline else None
    return _result(label, audio_s, reference, server, recording, cpu, rss, clock, options)


def _write_messages(recording: Recording, path: Path) -> None:
    """Every update as received, one JSON line each: {"t": seconds after the first frame, "msg"}."""
    with path.open("w", encoding="utf-8") as out:
        for t, text in recording.raw:
            out.write(json.dumps({"t": t, "msg": json.loads(text)}) + "\n")


def _measure(
    server: RunningServer, pcm: npt.NDArray[np.int16], audio_s: float, max_drain_s: float
) -> tuple[Recording, dict[str, Any]]:
    marks: list[proc.Snapshot] = []
    wall: list[float] = []
    sampler = proc.Sampler(server.pid)

    def started() -> None:
        marks.append(proc.Snapshot.take(server.pid))
        wall.append(time.monotonic())
        sampler.start()

    try:
        recording = asyncio.run(play(server.ws_url, pcm, started, max_drain_s))
    finally:
        timeline = sampler.stop() if marks else []
    end = proc.Snapshot.take(server.pid)
    totals = proc.usage(marks[0], end, time.monotonic() - wall[0], audio_s)
    return recording, {**totals, "timeline_5s": timeline}


def _result(
    label: str,
    audio_s: float,
    reference: str | None,
    server: RunningServer,
    recording: Recording,
    cpu: dict[str, Any],
    rss: float | None,
    clock: dict[str, Any] | None,
    options: ServerOptions,
) -> dict[str, Any]:
    final = recording.states[-1].committed if recording.states else ""
    clock_words = [
        ClockWord(w["text"], w["start"], w["end"]) for w in (clock or {}).get("words", [])
    ]
    timings = word_timings(recording.states, final, clock_words, lambda s: recording.at(s * RATE))
    aligned = [t for t in timings if t.aligned]
    offline_text = clock["text"] if clock else None
    return {
        "schema": SCHEMA,
        "system": {
            "name": "WhisperLiveKit",
            "version": WLK_VERSION,
            "policy": "localagreement",
            "backend": "faster-whisper (device auto, compute type auto, beam 5)",
            "model_dir": str(options.model_dir),
            "vac": options.vac,
            "min_chunk_size_s": options.min_chunk_size_s,
            "threads": options.threads,
            "server_argv": server.argv,
            "server_env": server.env,
            "startup_s": server.startup_s,
            "python": sys.version.split()[0],
        },
        "audio": {
            "path": label,
            "duration_s": audio_s,
            "chunk_s": CHUNK_S,
            "paced": "real time",
            "max_send_lateness_s": max(
                (t - first / RATE for first, t in recording.chunk_sent), default=0.0
            ),
        },
        "reference": reference,
        "transcript": final,
        "wer": wer(reference, final) if reference is not None else None,
        "offline": None
        if clock is None
        else {
            "transcript": offline_text,
            "wer": wer(reference, offline_text or "") if reference is not None else None,
            "cpu_s": clock["cpu_s"],
            "cpu_s_per_audio_s": clock["cpu_s"] / audio_s,
            "compute_type": clock["compute_type"],
            "words": clock.get("words", []),
        },
        "latency": {
            # over words placed on the offline clock; interpolated ones (words the offline pass
            # did not hear, e.g. hallucinations in pauses) are listed in "words" but not here
            "word_first_seen_after_word_end": summary(t.first_seen_latency_s for t in aligned),
            "word_commit_after_word_end": summary(t.commit_latency_s for t in aligned),
            "word_commit_by_third": by_thirds(aligned),
            "words_timed": len(aligned),
            "words_interpolated": len(timings) - len(aligned),
            "words_in_transcript": len(normalize(final).split()),
            # False: still busy max_drain_s after the last frame; words it had not committed by
            # then are missing from the transcript, and CPU counts only the time waited
            "drained": recording.drained,
            "drain_after_last_audio_s": (recording.ready_to_stop_t or recording.gave_up_t or 0.0)
            - recording.last_audio_t,
            "max_reported_lag_s": max((s.lag_s for s in recording.states), default=0.0),
        },
        "cpu": {**cpu, "server_peak_rss_mb": rss},
        "messages": {"received": recording.messages, "distinct_states": len(recording.states)},
        "started_unix": recording.started_unix,
        "words": [asdict(t) for t in timings],
        "states": [asdict(s) for s in recording.states],
    }
