"""Numbers and tables as the report prints them."""

from __future__ import annotations

import math
from collections.abc import Sequence


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
