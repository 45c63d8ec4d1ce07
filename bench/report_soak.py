"""The soak's section of ``REPORT.md`` and its own ``SOAK.md``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.report_format import pct, s, table

Json = dict[str, Any]


def soak_section(soak: Json) -> str:
    final = soak["final"]
    window = f"{soak['window_s'] / 60:.1f} min"
    first, last = final["first"], final["last"]
    holds = "holds" if final["holds"] else "**does not hold**"
    rss_rows = [
        [
            name,
            s(found["start_mb"], 0, " MB"),
            s(found["first_mb"], 0, " MB"),
            s(found["warm_mb"], 0, " MB"),
            s(found["last_mb"], 0, " MB"),
            pct(found["growth"]),
            ("exited; " if found["exited"] else "") + ("pass" if found["holds"] else "**FAIL**"),
        ]
        for name, found in soak["rss"].items()
    ]
    flat = all(found["holds"] for found in soak["rss"].values())
    warmup = f"{soak['warmup_s'] / 60:.0f} min"
    lines = [
        f"{soak['streams']} concurrent real-time stream(s) into one {soak['engine']} worker for "
        f"{soak['minutes']:.1f} min ({soak['sessions']} native sessions of whole talks back to "
        f"back, {soak['sessions_not_drained']} not drained; {soak['segments']} segments, "
        f"{soak['segments_without_final']} without a final; streaming WER "
        f"{pct(soak.get('streaming_wer'))}; largest reported lag {s(soak.get('status_max_lag_s'))}). "
        f"Command: `{soak['meta']['command']}` at {soak['meta']['date']}.",
        "",
        table(
            ["final after speech end", f"first {window}", f"last {window}"],
            [
                ["p50", s(first["p50"]), s(last["p50"])],
                ["p95", s(first["p95"]), s(last["p95"])],
                ["segments", str(first["n"]), str(last["n"])],
            ],
        ),
        "",
        f"**Final p95, last window against the first: {pct(final['p95_change'])}** "
        f"(within ±{pct(final['tolerance'])}: {holds}).",
        "",
        table(
            [
                "process",
                "RSS at start",
                f"first {window} (median)",
                f"{window} after {warmup} (median)",
                f"last {window} (median)",
                "growth",
                f"< {pct(soak['rss_growth_limit'])}",
            ],
            rss_rows,
        ),
        "",
        f"**Memory {'flat' if flat else 'not flat'}**: every process's resident memory, median of "
        f"the last window against the window after a {warmup} warm-up (the worker's allocator "
        "grows while new batch shapes appear, nats-server's file store fills its caches; the "
        "first window is shown beside them).",
    ]
    return "\n".join(lines) + "\n"


def soak_markdown(soak: Json, plot: str | None) -> str:
    drawn = f"\n![soak]({plot})\n" if plot else ""
    return "# EchoStream soak\n\n" + soak_section(soak) + drawn


def plot_soak(path: Path, soak: Json) -> bool:
    """Final latency over the soak and every process's resident memory."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    finals, memory = soak["series"]["finals"], soak["series"]["memory"]
    if not finals or not memory:
        return False
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    top.plot([t / 60 for t, _ in finals], [v for _, v in finals], ".", ms=2, alpha=0.5)
    top.set_ylabel("final after speech end (s)")
    top.set_ylim(bottom=0)
    top.grid(alpha=0.3)
    for name in sorted({k for row in memory for k in row if k != "at"}):
        points = [(row["at"] / 60, row[name]) for row in memory if row.get(name) is not None]
        bottom.plot([t for t, _ in points], [v for _, v in points], label=name)
    bottom.set_ylabel("resident memory (MB)")
    bottom.set_xlabel("minutes into the soak")
    bottom.set_yscale("log")
    bottom.grid(alpha=0.3)
    bottom.legend(fontsize=7)
    fig.suptitle(f"soak: {soak['streams']} stream(s), {soak['engine']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
