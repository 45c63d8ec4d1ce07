"""Test helper: the shared real-speech corpus, the Whisper model, text normalisation and WER.

The corpus lives outside the repository (``ECHOSTREAM_SPEECH_DIR``, default ``<repo>/../shared/speech``);
tests that need it skip with a clear reason when it is absent. Only ``"split": "dev"`` items are for
tests and tuning; ``eval`` is reserved for reported benchmark numbers.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
import wave
from dataclasses import dataclass
from pathlib import Path

import jiwer
import numpy as np
import numpy.typing as npt
import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class SpeechItem:
    id: str
    path: Path
    text: str
    duration_s: float
    speaker: str
    source: str
    split: str


def corpus_dir() -> Path:
    """The corpus directory (it may not exist)."""
    return Path(os.environ.get("ECHOSTREAM_SPEECH_DIR", REPO.parent / "shared" / "speech"))


def require_corpus() -> Path:
    """The corpus directory, or skip the calling test with the reason."""
    root = corpus_dir()
    if not (root / "manifest.jsonl").is_file():
        pytest.skip(f"speech corpus not found at {root} (set ECHOSTREAM_SPEECH_DIR)")
    return root


def require_whisper_model() -> Path:
    """The ggml Whisper model for tests (``ECHOSTREAM_WHISPER_MODEL``), or skip with the reason."""
    path = Path(os.environ.get("ECHOSTREAM_WHISPER_MODEL", REPO / "models" / "ggml-tiny.en.bin"))
    if not path.is_file():
        pytest.skip(
            f"whisper model not found at {path} (run `make install` or set ECHOSTREAM_WHISPER_MODEL)"
        )
    return path


def load_items(split: str = "dev", manifest: str = "manifest.jsonl") -> list[SpeechItem]:
    """Manifest items of one split, in manifest order; skips when the corpus is absent."""
    root = require_corpus()
    items = []
    for line in (root / manifest).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        if row.get("split") != split:
            continue
        items.append(
            SpeechItem(
                id=row["id"],
                path=root / row["path"],
                text=row["text"],
                duration_s=float(row["duration_s"]),
                speaker=str(row.get("speaker", "")),
                source=str(row.get("source", "")),
                split=row["split"],
            )
        )
    return items


def item(item_id: str, split: str = "dev") -> SpeechItem:
    """One item by id (it must belong to ``split``)."""
    for found in load_items(split):
        if found.id == item_id:
            return found
    raise KeyError(f"{item_id} is not a {split} item")


def read_wav(path: Path) -> npt.NDArray[np.int16]:
    """A 16 kHz mono 16-bit WAV file as int16 samples."""
    with wave.open(str(path), "rb") as wav:
        if (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) != (SAMPLE_RATE, 1, 2):
            raise ValueError(f"{path}: expected 16 kHz mono PCM16")
        raw = wav.readframes(wav.getnframes())
    return np.frombuffer(raw, dtype="<i2").astype(np.int16)


def to_float32(pcm: npt.NDArray[np.int16]) -> npt.NDArray[np.float32]:
    return (pcm.astype(np.float32) / 32768.0).astype(np.float32)


_PUNCT = re.compile(r"[^\w\s']|_")
_SPACES = re.compile(r"\s+")


def normalize(text: str) -> str:
    """Whisper-style basic normalisation: lower case, no punctuation or brackets, single spaces."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = re.sub(r"[\[(<][^\])>]*[\])>]", " ", text)  # [BLANK_AUDIO], (music), <|...|>
    text = text.replace("-", " ")
    text = _PUNCT.sub(" ", text)
    text = re.sub(r"(?<!\w)'|'(?!\w)", " ", text)  # quotes, not apostrophes inside words
    return _SPACES.sub(" ", text).strip()


def wer(reference: str | list[str], hypothesis: str | list[str]) -> float:
    """Word error rate after normalisation (pooled over lists, as jiwer does)."""
    refs = [reference] if isinstance(reference, str) else reference
    hyps = [hypothesis] if isinstance(hypothesis, str) else hypothesis
    return float(jiwer.wer([normalize(r) for r in refs], [normalize(h) for h in hyps]))


@dataclass(frozen=True)
class Passage:
    """Consecutive utterances joined by silence, with each utterance's sample span and text."""

    pcm: npt.NDArray[np.int16]
    spans: tuple[tuple[int, int], ...]
    texts: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join(self.texts)

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / SAMPLE_RATE


def passage(items: list[SpeechItem], gap_s: float = 0.6, lead_s: float = 0.5) -> Passage:
    """Join utterances with ``gap_s`` of digital silence (and ``lead_s`` before the first)."""
    gap = np.zeros(int(gap_s * SAMPLE_RATE), dtype=np.int16)
    parts = [np.zeros(int(lead_s * SAMPLE_RATE), dtype=np.int16)]
    spans = []
    pos = len(parts[0])
    for found in items:
        pcm = read_wav(found.path)
        spans.append((pos, pos + len(pcm)))
        parts += [pcm, gap]
        pos += len(pcm) + len(gap)
    return Passage(np.concatenate(parts), tuple(spans), tuple(i.text for i in items))


def chapter(prefix: str, split: str = "dev") -> list[SpeechItem]:
    """The items of one LibriSpeech chapter (``speaker-chapter``), in utterance order."""
    return sorted(
        (i for i in load_items(split) if i.id.startswith(prefix + "-")), key=lambda i: i.id
    )
