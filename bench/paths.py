"""Where the bench finds the repository and the test helpers it imports (corpus, nats-server)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"


def bench_pythonpath() -> str:
    """``PYTHONPATH`` for a child running ``python -m bench...``: the test helpers, the bench, then
    whatever the caller had."""
    return os.pathsep.join(filter(None, [str(TESTS), str(REPO), os.environ.get("PYTHONPATH")]))
