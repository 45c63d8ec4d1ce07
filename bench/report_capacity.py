"""The capacity section of ``REPORT.md`` and its plot: every engine's ramp, its compute bound and
its scaling from one worker to more."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.report_format import pct, s, table

Json = dict[str, Any]
NAMES = {"whisper": "whisper.cpp", "fasterwhisper": "faster-whisper"}
METHOD = """\
- **Capacity**: per engine, concurrent sessions through one capture process into one (then
  two) workers on this machine, started with the engine's default settings (no admission setting
  changed; only the status interval is 1 s). Levels 1, 2, 4, 8, then every 4 more, each stream a
  different piece of the corpus's talks (every talk's first piece, then every second one; pieces
  repeat past their number), staggered. A level **fails** when final p95 or
  first-partial p95 exceeds its limit, streaming WER exceeds the offline WER of the same talks by
  more than the margin, the workers' reported lag (mean of `max_lag_s` over the second half of
  full load minus the first half; full load = every stream playing) grows by more than its
  limit, or a session does not drain. The ramp stops there; the level before is **sustained**.
- **Shed partials**: from the workers' Prometheus counters whose name says `shed` (share of the
  moments a partial was due = shed / (shed + partial decodes)), by the worker's reason: shed
  under load (`lag`, the figure that counts) first, skipped for the per-stream CPU budget
  (`budget`, at any load) in brackets; then the share of status reports `shedding`. "Not
  published" where the worker has neither. **Not admitting**: share of the level's status
  reports in which a worker took no further job (admission follows measured load).
- **Compute bound** = cores ÷ the engine's offline CPU-s per audio-s on the same talks, in the
  same run (`getrusage` around one decode per talk in a separate process): the streams the cores
  could carry if streaming cost what offline decoding does. Sustained ÷ bound says how much of
  the machine the streaming path turns into streams."""


def capacity_section(results: Json) -> str:
    capacity = results["capacity"]
    plan = capacity["plan"]
    limits = plan["limits"]
    out = [
        f"Each stream is a different piece of ~{plan['seconds_per_stream']:.0f} s cut from the "
        f"talks ({len(plan['talks'])} pieces; every talk's first piece before any second one), "
        f"started {plan['stagger_s']} s after the previous one. "
        f"A level fails at final p95 > {limits['final_p95_s']} s, first partial p95 > "
        f"{limits['first_partial_p95_s']} s, streaming WER > offline + "
        f"{100 * limits['wer_over_offline']:.0f} pt (judged from {limits['wer_min_words']} "
        f"reference words in the level on: below that one word is more than a point), lag "
        f"growing > {limits['lag_growth_s']} s under full load, or a session not draining.",
        "",
        _overview(capacity, results["meta"]["cores"]),
        "",
    ]
    for engine, found in capacity["engines"].items():
        for ramp in found["ramps"]:
            who = f"{ramp['workers']} {NAMES.get(engine, engine)} worker(s)"
            out += [f"**{who}**", "", _levels(ramp), "", _ending(ramp), ""]
    return "\n".join(out).rstrip() + "\n"


def _overview(capacity: Json, cores: object) -> str:
    rows = []
    for engine, found in capacity["engines"].items():
        by_workers = {r["workers"]: r for r in found["ramps"]}
        one, more = by_workers.get(1), [r for w, r in sorted(by_workers.items()) if w > 1]
        bound = found.get("compute_bound_streams")
        scaling = "; ".join(f"{r['workers']} workers: {sustained(r)}" for r in more) or "–"
        rows.append(
            [
                NAMES.get(engine, engine),
                sustained(one) if one else "–",
                s(found.get("offline_cpu_per_audio_s"), 3, ""),
                s(bound, 1, " streams"),
                pct(found.get("sustained_over_compute_bound")),
                scaling,
                _two_machines(one),
            ]
        )
    return table(
        [
            "engine",
            "sustained, 1 worker",
            "offline CPU-s / audio-s",
            f"compute bound ({cores} cores)",
            "sustained / bound",
            "more workers, same machine",
            "2 machines (1 worker each)",
        ],
        rows,
    )


def _two_machines(one: Json | None) -> str:
    """Workers on separate machines do not share cores: each carries what one does alone."""
    if one is None:
        return "–"
    return f"{2 * one['sustained_streams']} (2 × one worker)"


def sustained(ramp: Json) -> str:
    """The streams a ramp sustained; "at least N" when it ended without a failing level."""
    count = ramp["sustained_streams"]
    return str(count) if ramp.get("first_failing") else f"at least {count} (no level failed)"


def _levels(ramp: Json) -> str:
    rows = []
    for level in ramp["levels"]:
        latency = level["latency"]
        final, first = latency["final_after_speech_end"], latency["first_partial_after_onset"]
        wer, shed = level["wer"], level["partials_shed"]
        rows.append(
            [
                str(level["level"]),
                f"{s(final['p50'])} / {s(final['p95'])}",
                f"{s(first['p50'])} / {s(first['p95'])}",
                _shed(shed),
                _closed(shed),
                f"{pct(wer['streaming'])} / {pct(wer['offline'])}",
                s(level["worker_cpu_per_audio_s"], 3, ""),
                s(level["worker_peak_rss_mb"], 0, " MB"),
                s(level.get("status_max_lag_s")),
                s(level.get("lag_growth_s")),
                s(level.get("other_processes_cores"), 2, ""),
                "; ".join(level["failures"]) or "sustained",
            ]
        )
    return table(
        [
            "streams",
            "final p50 / p95",
            "1st partial p50 / p95",
            "partials shed under load",
            "reports not admitting",
            "WER streaming / offline",
            "worker CPU-s / audio-s",
            "worker peak RSS",
            "max lag",
            "lag growth",
            "other load (cores)",
            "verdict",
        ],
        rows,
    )


def _shed(shed: Json) -> str:
    """Shed under load (the worker's "lag" reason) first; partials skipped for the per-stream
    CPU budget are by design at any load, so they are shown apart."""
    share, reports = shed.get("share"), shed.get("status_reports_shedding")
    if share is None and reports is None:
        return "not published"
    reasons = shed.get("share_by_reason") or {}
    parts = []
    if "lag" in reasons:
        others = ", ".join(f"{r} {pct(v)}" for r, v in sorted(reasons.items()) if r != "lag")
        parts.append(f"{pct(reasons['lag'])}" + (f" ({others} skipped)" if others else ""))
    elif share is not None:
        parts.append(pct(share))
    if reports is not None:
        parts.append(f"shedding in {pct(reports)} of reports")
    return ", ".join(parts)


def _closed(shed: Json) -> str:
    return pct(shed.get("status_reports_not_admitting"))


def _ending(ramp: Json) -> str:
    failing = ramp.get("first_failing")
    text = f"Sustained: **{sustained(ramp)}** concurrent real-time stream(s)"
    if failing:
        text += f"; {failing['level']} failed ({'; '.join(failing['reasons'])})"
    others = tuple(f"ECHOSTREAM_{e.upper()}_" for e in NAMES if e != ramp["engine"])
    given = {k: v for k, v in ramp.get("settings", {}).items() if not k.startswith(others)}
    settings = ", ".join(f"`{k}={v}`" for k, v in sorted(given.items()))
    return text + f". Settings given: {settings or 'none'}."


def plot_capacity(path: Path, results: Json, raw: Json) -> bool:
    import matplotlib.pyplot as plt

    capacity = results.get("capacity") or {}
    ramps = [r for f in capacity.get("engines", {}).values() for r in f["ramps"] if r["levels"]]
    if not ramps:
        return False
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
    for ramp, colour in zip(ramps, colours, strict=False):
        levels = ramp["levels"]
        n = [lv["level"] for lv in levels]
        who = f"{NAMES.get(ramp['engine'], ramp['engine'])} × {ramp['workers']}"
        final = [_nan(lv["latency"]["final_after_speech_end"]["p95"]) for lv in levels]
        first = [_nan(lv["latency"]["first_partial_after_onset"]["p95"]) for lv in levels]
        ax.plot(n, final, "o-", color=colour, label=f"{who}: final p95")
        ax.plot(n, first, "s:", color=colour, alpha=0.6, label=f"{who}: first partial p95")
    limits = capacity["plan"]["limits"]
    ax.axhline(limits["final_p95_s"], color="tab:red", ls="--", lw=0.8, label="final p95 limit")
    ax.axhline(limits["first_partial_p95_s"], color="grey", ls="--", lw=0.8, label="partial limit")
    ax.set_xlabel("concurrent real-time streams")
    ax.set_ylabel("seconds")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    ax.set_title("capacity (whole system on this machine)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _nan(value: object) -> float:
    return float(value) if isinstance(value, int | float) else float("nan")
