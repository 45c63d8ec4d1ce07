"""What a batch engine supplies: a transcriber that decodes a clip into timed words."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

Purpose = Literal["final", "partial"]
"""Why a clip is decoded: a disposable partial gets a bounded cost, a final the full effort."""

Rejection = Literal["silence", "non_speech", "hallucination"]


@dataclass(frozen=True, slots=True)
class DecodedWord:
    """A decoded word, in seconds from the start of the decoded clip."""

    text: str
    start_s: float
    end_s: float
    probability: float


@dataclass(frozen=True, slots=True)
class Decoded:
    """An engine's guarded decode of one clip; empty with ``rejected`` set when a guard refused it."""

    text: str
    words: tuple[DecodedWord, ...]
    language: str
    confidence: float | None  # mean token probability of the raw decode
    decode_s: float  # wall seconds spent in the engine (0 when a guard skipped decoding)
    cpu_s: float  # CPU-seconds the decode took (or an upper bound: wall time x threads)
    audio_s: float
    audio_ctx: (
        int  # encoder frames (20 ms) the engine ran, for engines that cut them; 0 = full 30 s
    )
    purpose: Purpose
    rejected: Rejection | None = None


class Transcriber(Protocol):
    """Decodes one clip of 16 kHz mono float32 audio; ``prompt`` is the text that precedes it."""

    async def transcribe(
        self, audio: npt.NDArray[np.float32], *, purpose: Purpose, prompt: str | None = None
    ) -> Decoded: ...


class ModelTranscriber(Transcriber, Protocol):
    """A transcriber that owns a loaded model: a worker warms it up and closes it."""

    async def warm_up(self) -> None:
        """Load the model now rather than on the first decode."""
        ...

    async def aclose(self) -> None: ...
