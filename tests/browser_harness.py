"""Shared by the browser tests: Chromium's location and flags, and the pipeline's tokens."""

from __future__ import annotations

import os
from pathlib import Path

CHROMIUM = Path(os.environ.get("ECHOSTREAM_CHROMIUM", "/usr/bin/chromium"))
CAPTURE_TOKEN = "browser-test-capture-token"
AGGREGATOR_TOKEN = "browser-test-aggregator-token"
LEAD_S = 1.0
"""Silence before the speech: the fake microphone starts with the capture, before the socket."""


def chromium_args(wav: Path) -> list[str]:
    """Headless as root on a closed network, with a fake microphone playing ``wav`` once."""
    return [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--autoplay-policy=no-user-gesture-required",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}%noloop",
    ]
