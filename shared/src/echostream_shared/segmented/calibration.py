"""What one real-time stream will cost on this machine, before any stream has shown it.

A worker that takes a burst of sessions must price each before its first final (seconds in) shows
what streams cost here, and machines differ several times in speed (faster-whisper's int8 on
AVX-512 VNNI against AVX2 alone: 2.2x). So the engine times a reference decode when it starts: a
final of ten seconds of seeded noise, which has no words, so the encoder's window and a short
decode alone, the same work on any machine. A stream costs a fixed multiple of it, the engine's
own (its partials and its batching), which each engine gives with a margin.
"""

from __future__ import annotations

import time

import numpy as np
import numpy.typing as npt

from echostream_shared.segmented.decoding import Transcriber

SAMPLE_RATE = 16_000
REFERENCE_S = 10.0


def reference_clip() -> npt.NDArray[np.float32]:
    rng = np.random.default_rng(0)
    return rng.normal(0.0, 0.1, int(REFERENCE_S * SAMPLE_RATE)).astype(np.float32)


async def reference_cost(transcriber: Transcriber, runs: int = 2) -> float:
    """CPU-s per audio second of the reference decode, the cheapest of ``runs`` (the first ones
    after loading pay for warming up). Process CPU time: run it before the worker takes jobs."""
    clip = reference_clip()
    costs = []
    for _ in range(runs):
        before = time.process_time()
        await transcriber.transcribe(clip, purpose="final")
        costs.append(time.process_time() - before)
    return min(costs) / REFERENCE_S
