"""An engine worker's own Prometheus metrics, read as the bench cross-checks them."""

from __future__ import annotations


def worker_counters(exposition: str) -> dict[str, float]:
    """Counters and histogram counts/sums of a Prometheus text exposition, by ``name{labels}``."""
    found = {}
    for line in exposition.splitlines():
        if line.startswith("echostream_"):
            name, _, value = line.rpartition(" ")
            # a labelled series ends in "}": the suffix to match is on the name before the labels
            if name.partition("{")[0].endswith(("_count", "_sum", "_total")):
                found[name] = float(value)
    return found
