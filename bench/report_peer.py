"""REPORT.md's side-by-side section: EchoStream's main pass and WhisperLiveKit on the same audio.

``peer_section(ours, peer)`` takes the main pass summary of ``bench.run`` and the summary of
``bench.peer_pass.run_peer_session`` and returns Markdown lines.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

HEADING = "## Side by side: WhisperLiveKit, same audio, same run"
NONE = "–"

Json = Mapping[str, Any]
FORMATS = {"pct": (1, "%"), "s": (2, " s"), "cpu": (3, ""), "x": (2, " ×"), "mb": (0, " MB")}


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def fmt(value: object, digits: int = 2, unit: str = " s") -> str:
    number = _number(value)
    return NONE if number is None else f"{number:.{digits}f}{unit}"


def pct(value: object) -> str:
    number = _number(value)
    return NONE if number is None else f"{100 * number:.1f} %"


def ratio(peer: object, ours: object) -> str:
    """peer / ours, like "6.8 ×" ("–" when either is missing or ours is 0)."""
    a, b = _number(peer), _number(ours)
    if a is None or b is None or b == 0:
        return NONE
    value = a / b
    return f"{value:.1f} ×" if value >= 1 else f"{value:.2f} ×"


def yes_no(value: object) -> str:
    return NONE if value is None else ("yes" if value else "**no**")


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _get(found: object, *keys: str) -> object:
    """``found[k1][k2]...``, or None where any level is missing."""
    for key in keys:
        if not isinstance(found, Mapping):
            return None
        found = found.get(key)
    return found


def overall(rows: object) -> Json:
    """The ``corpus == "all"`` row of a WER table (empty if there is none)."""
    if isinstance(rows, Sequence):
        for row in rows:
            if isinstance(row, Mapping) and row.get("corpus") == "all":
                return row
    return {}


def cpu_ratio(streaming: object, offline: object) -> float | None:
    a, b = _number(streaming), _number(offline)
    return a / b if a is not None and b is not None and b > 0 else None


def comparison_rows(ours: Json, peer: Json) -> list[list[str]]:
    ours_all, peer_all = overall(ours.get("wer")), overall(peer.get("wer"))
    ours_stream = _get(ours, "cpu", "streaming_cpu_per_audio_s")
    ours_offline = _get(ours, "cpu", "offline_cpu_per_audio_s")
    peer_stream, peer_offline = peer.get("cpu_per_audio_s"), peer.get("offline_cpu_per_audio_s")
    rows: list[list[str]] = []

    def add(label: str, a: object, b: object, show: str) -> None:
        digits, unit = FORMATS[show]
        if unit == "%":
            rows.append([label, pct(a), pct(b), ratio(b, a)])
        else:
            rows.append([label, fmt(a, digits, unit), fmt(b, digits, unit), ratio(b, a)])

    add("WER, streaming", ours_all.get("streaming_wer"), peer_all.get("streaming_wer"), "pct")
    add(
        "WER, offline (each system's own offline decoder)",
        ours_all.get("offline_wer"),
        peer_all.get("offline_wer"),
        "pct",
    )
    for label, key in (
        ("word first shown after word end", "word_first_seen_after_word_end"),
        ("word committed after word end", "word_commit_after_word_end"),
    ):
        for p in ("p50", "p95"):
            add(f"{label}, {p}", _get(ours, "latency", key, p), _get(peer, "latency", key, p), "s")
    add("CPU-s per audio-s, streaming", ours_stream, peer_stream, "cpu")
    add("CPU-s per audio-s, offline", ours_offline, peer_offline, "cpu")
    add(
        "streaming / offline CPU",
        cpu_ratio(ours_stream, ours_offline),
        cpu_ratio(peer_stream, peer_offline),
        "x",
    )
    add("peak RSS", ours.get("peak_rss_mb"), peer.get("peak_rss_mb"), "mb")
    add(
        "partial text retracted (share of words shown)",
        _get(ours, "stability", "retracted_share"),
        _get(peer, "stability", "retracted_share"),
        "pct",
    )
    rows.append(["drained", yes_no(ours.get("drained")), yes_no(peer.get("drained")), NONE])
    return rows


def corpus_rows(ours: Json, peer: Json) -> list[list[str]]:
    """Per-corpus WER of both systems, streaming and offline; "all" last."""
    by_system: list[dict[str, Json]] = []
    for found in (ours, peer):
        rows = found.get("wer")
        table_rows = rows if isinstance(rows, Sequence) else []
        by_system.append(
            {str(r["corpus"]): r for r in table_rows if isinstance(r, Mapping) and "corpus" in r}
        )
    names = [n for n in by_system[0] if n != "all"]
    names += [n for n in by_system[1] if n != "all" and n not in names]
    if any("all" in rows for rows in by_system):
        names.append("all")
    out = []
    for name in names:
        a, b = by_system[0].get(name, {}), by_system[1].get(name, {})
        words = a.get("words", b.get("words"))
        out.append(
            [
                f"**{name}**" if name == "all" else name,
                NONE if words is None else str(words),
                pct(a.get("streaming_wer")),
                pct(a.get("offline_wer")),
                pct(b.get("streaming_wer")),
                pct(b.get("offline_wer")),
            ]
        )
    return out


def method(peer: Json) -> str:
    system = peer.get("system") or {}
    latency = peer.get("latency") or {}
    whole = peer.get("wer_whole_transcript") or {}
    vac = system.get("vac")
    drained = (
        f"it finished {fmt(latency.get('drain_after_last_audio_s'), 1)} after the last audio frame"
        if peer.get("drained")
        else "it was still busy when the bench stopped waiting, so words it had not committed "
        "by then count as deletions and its CPU covers only the time waited"
    )
    return (
        f"How the WhisperLiveKit column was measured: WhisperLiveKit {system.get('version', '?')}, "
        f"{system.get('policy', '?')} policy on {system.get('backend', '?')}, served the "
        f"CTranslate2 tiny.en directory `{system.get('model_dir', '?')}` (the model EchoStream's "
        f"ggml file is converted from) with {system.get('threads', '?')} threads, its voice "
        f"activity controller {'on' if vac else 'off' if vac is not None else '?'} and its "
        "defaults otherwise; the same session audio was played into its WebSocket at real time in "
        "100 ms frames, as one stream. It decodes with beam search (beam 5), EchoStream's worker "
        "greedily. Its word times come from its own offline faster-whisper pass over the same "
        f"audio (compute type {system.get('offline_compute_type') or 'auto'}), EchoStream's from "
        "whisper.cpp token timestamps; both are good to a few tenths of a second. Its word "
        "latencies count the committed words that offline pass also heard "
        f"({latency.get('words_timed', '?')} timed, {latency.get('words_interpolated', '?')} "
        "interpolated and left out). Its transcript is split into talks by those word times; "
        f"scored whole, its WER is {pct(whole.get('streaming'))} (offline "
        f"{pct(whole.get('offline'))}). Its offline WER and CPU are that one offline pass over "
        "the whole session; EchoStream's offline limit decodes each talk in one call. Its CPU is "
        "the server process's (all threads) from the first frame to its end of stream, per audio "
        "second; its peak RSS is the server's, EchoStream's the sum of its engine processes'. "
        f"Other processes kept {fmt(peer.get('other_processes_cores'), 2, ' cores')} busy on "
        f"average during its run; {drained}."
    )


def peer_section(ours: Json, peer: Json) -> list[str]:
    """Markdown lines: the comparison table, how the peer was measured, per-corpus WER."""
    if not peer.get("available"):
        reason = peer.get("reason") or "no reason was recorded"
        return [HEADING, "", f"WhisperLiveKit did not run in this run: {reason}"]
    return [
        HEADING,
        "",
        *table(
            ["", "EchoStream", "WhisperLiveKit", "ratio (peer / ours)"], comparison_rows(ours, peer)
        ),
        "",
        method(peer),
        "",
        *table(
            [
                "corpus",
                "words",
                "EchoStream streaming",
                "EchoStream offline",
                "WhisperLiveKit streaming",
                "WhisperLiveKit offline",
            ],
            corpus_rows(ours, peer),
        ),
    ]
