"""The peer's pass: WhisperLiveKit (``tests/peer``) on a bench session's audio, summarized in the
shape of EchoStream's pass summaries so that the report can put the two side by side.

The peer plays the whole session at real time as one stream, with the talks' texts joined as its
reference. Its transcript is split back into talks by time: each committed word sits on the peer's
word clock (its own offline faster-whisper pass over the same audio, ``peer.words``) and belongs to
the talk whose span holds the middle of the word. The offline transcript is split the same way:
its words are placed on that clock by aligning them with the committed words that carry offline
times (words the live transcript lacks are interpolated between their neighbours), unless the
peer's result lists the offline words with their times itself (``offline.words``).

Per-word latencies, partial stability and CPU come from the peer's own measurements; percentiles
are recomputed with ``bench.metrics.summary`` so that both systems are summarized alike.
"""

from __future__ import annotations

import bisect
import json
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from peer.paths import PeerUnavailable
from peer.run import run_peer_pcm
from peer.words import ClockWord, place
from speech_corpus import normalize, wer

from bench import metrics
from bench.audio import RATE, Session
from bench.stability import retraction

Json = dict[str, Any]
TimedText = tuple[str, float]  # a word and a time in the audio (seconds)
REASON_CHARS = 400


def reference_text(session: Session) -> str:
    return " ".join(talk.text for talk in session.talks)


def talk_index(session: Session, time_s: float) -> int:
    """The talk whose span holds ``time_s`` (the spans tile the audio; outside: the nearest)."""
    starts = [span.start for span in session.talk_spans]
    return max(0, bisect.bisect_right(starts, time_s * RATE) - 1)


def split_by_talk(session: Session, words: Sequence[TimedText]) -> list[str]:
    """Each talk's words, in order, joined by spaces."""
    parts: list[list[str]] = [[] for _ in session.talks]
    for text, time_s in words:
        parts[talk_index(session, time_s)].append(text)
    return [" ".join(part) for part in parts]


def streaming_words(peer: Mapping[str, Any]) -> list[TimedText]:
    """The committed words at the middle of their place on the peer's word clock."""
    return [
        (str(w["text"]), (float(w["audio_start_s"]) + float(w["audio_end_s"])) / 2)
        for w in peer.get("words") or []
    ]


def offline_words(peer: Mapping[str, Any]) -> list[TimedText]:
    """The offline transcript's words with a time each (see the module's docstring)."""
    offline = peer.get("offline") or {}
    listed = offline.get("words")
    if listed:
        return [(str(w["text"]), (float(w["start"]) + float(w["end"])) / 2) for w in listed]
    tokens = normalize(str(offline.get("transcript") or "")).split()
    clock = [
        ClockWord(str(w["text"]), float(w["audio_start_s"]), float(w["audio_end_s"]))
        for w in peer.get("words") or []
        if w.get("aligned")
    ]
    placed = place(tokens, clock) if tokens and clock else None
    if placed is None:  # nothing to place them by: all in the first talk
        return [(token, 0.0) for token in tokens]
    return [(p.text, (p.start_s + p.end_s) / 2) for p in placed]


def talk_scores(session: Session, peer: Mapping[str, Any]) -> list[metrics.TalkScore]:
    streamed = split_by_talk(session, streaming_words(peer))
    has_offline = bool(peer.get("offline"))
    offline = split_by_talk(session, offline_words(peer)) if has_offline else None
    scores = []
    for k, (talk, span) in enumerate(zip(session.talks, session.talk_spans, strict=True)):
        limit = None if offline is None else offline[k]
        scores.append(
            metrics.TalkScore(
                talk=talk.name,
                corpus=talk.corpus,
                audio_s=(span.end - span.start) / RATE,
                reference=talk.text,
                streaming=streamed[k],
                offline=limit,
                streaming_wer=wer(talk.text, streamed[k]),
                offline_wer=None if limit is None else wer(talk.text, limit),
            )
        )
    return scores


def commit_by_third(timed: Sequence[Mapping[str, Any]]) -> list[metrics.Summary]:
    """Commit latency of the words ending in the first, middle and last third of the audio."""
    if not timed:
        return []
    length = max(float(w["audio_end_s"]) for w in timed) or 1.0
    parts: list[list[float]] = [[], [], []]
    for word in timed:
        third = min(2, int(3 * float(word["audio_end_s"]) / length))
        parts[third].append(float(word["commit_latency_s"]))
    return [metrics.summary(part) for part in parts]


def summarize(session: Session, peer: Mapping[str, Any]) -> Json:
    """The pass summary of one peer result (``peer.run`` schema ``echostream.peer/1``)."""
    timed = [w for w in peer.get("words") or [] if w.get("aligned")]
    latency = peer["latency"]
    cpu = peer["cpu"]
    offline = peer.get("offline") or {}
    system = peer["system"]
    scores = talk_scores(session, peer)
    states = peer.get("states") or []
    return {
        "system": {
            key: system.get(key)
            for key in (
                "name",
                "version",
                "policy",
                "backend",
                "model_dir",
                "vac",
                "min_chunk_size_s",
                "threads",
                "startup_s",
            )
        }
        | {"offline_compute_type": offline.get("compute_type")},
        "available": True,
        "audio_s": float(peer["audio"]["duration_s"]),
        "wer": metrics.wer_by_corpus(scores),
        "wer_whole_transcript": {"streaming": peer.get("wer"), "offline": offline.get("wer")},
        "talks": [
            {
                "talk": s.talk,
                "corpus": s.corpus,
                "audio_s": s.audio_s,
                "streaming_wer": s.streaming_wer,
                "offline_wer": s.offline_wer,
            }
            for s in scores
        ],
        "latency": {
            "word_first_seen_after_word_end": metrics.summary(
                float(w["first_seen_latency_s"]) for w in timed
            ),
            "word_commit_after_word_end": metrics.summary(
                float(w["commit_latency_s"]) for w in timed
            ),
            "word_commit_by_third": commit_by_third(timed),
            "words_timed": len(timed),
            "words_interpolated": len(peer.get("words") or []) - len(timed),
            "drain_after_last_audio_s": latency.get("drain_after_last_audio_s"),
            "max_reported_lag_s": latency.get("max_reported_lag_s"),
        },
        "cpu_per_audio_s": cpu.get("cpu_s_per_audio_s"),
        "offline_cpu_per_audio_s": offline.get("cpu_s_per_audio_s"),
        "peak_rss_mb": cpu.get("server_peak_rss_mb"),
        "other_processes_cores": cpu.get("other_processes_cores"),
        "drained": bool(latency.get("drained")),
        "stability": retraction(f"{s['committed']} {s['buffer']}" for s in states),
    }


def unavailable(reason: str) -> Json:
    return {"available": False, "reason": reason}


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= REASON_CHARS else text[: REASON_CHARS - 1] + "…"


def _keep_error(log_dir: Path, error: BaseException) -> Path:
    path = log_dir / "peer-error.txt"
    path.write_text("".join(traceback.format_exception(error)), encoding="utf-8")
    return path


def run_peer_session(session: Session, log_dir: Path, threads: int = 2) -> Json:
    """Run WhisperLiveKit on ``session.audio`` at real time and summarize it.

    The full peer result goes to ``log_dir / "peer.json"`` (with the server's log and every
    message it sent). Never raises for the peer's sake: when it cannot run or fails, the summary
    is ``{"available": False, "reason": ...}`` and the traceback is in ``log_dir``.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    try:
        peer = run_peer_pcm(
            session.audio,
            reference_text(session),
            label=f"bench session {session.name!r}",
            threads=threads,
            log_dir=log_dir,
        )
    except PeerUnavailable as error:
        kept = _keep_error(log_dir, error)
        return unavailable(f"WhisperLiveKit cannot run here: {_one_line(error)} (details: {kept})")
    except Exception as error:  # the bench goes on without the peer, saying why
        kept = _keep_error(log_dir, error)
        return unavailable(
            f"the WhisperLiveKit run failed: {type(error).__name__}: {_one_line(error)} "
            f"(details: {kept})"
        )
    raw_path = log_dir / "peer.json"
    raw_path.write_text(json.dumps(peer, indent=1) + "\n", encoding="utf-8")
    try:
        summary = summarize(session, peer)
    except Exception as error:
        kept = _keep_error(log_dir, error)
        return unavailable(
            f"WhisperLiveKit ran but its result could not be summarized: "
            f"{type(error).__name__}: {_one_line(error)} (result: {raw_path}; details: {kept})"
        )
    return {**summary, "raw_path": str(raw_path)}
