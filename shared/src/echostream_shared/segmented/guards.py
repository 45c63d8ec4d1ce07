"""Guards against Whisper's known failure modes, as small pure functions.

Whisper invents text on silence ("Thank you.", "[BLANK_AUDIO]"), loops on a phrase, copies the last
words again where the audio has ended, and, when audio is cut into windows, repeats the words at a
cut (``reference/peers-streaming-asr.md`` §8). Every engine's transcriber skips near-silent clips
and passes each decode through ``screen`` before any text leaves the worker; the segmented stream
drops repeated words at a forced cut with ``boundary_overlap``. Word-level functions take plain strings and return indices or counts, so
callers keep their own word types (timestamps, probabilities).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from echostream_shared.segmented.decoding import DecodedWord, Rejection

FRAME = 480  # 30 ms at 16 kHz

# Normalised texts Whisper is known to produce on silence, music or noise.
KNOWN_HALLUCINATIONS = frozenset(
    {
        "thank you",
        "thank you very much",
        "thanks for watching",
        "thank you for watching",
        "thanks for listening",
        "thank you for listening",
        "please subscribe",
        "subscribe",
        "like and subscribe",
        "bye",
        "bye bye",
        "goodbye",
        "you",
        "oh",
        "uh",
        "um",
        "hmm",
        "so",
        "okay",
        "the end",
        "music",
        "applause",
        "silence",
        "blank audio",
        "subtitles by the amara org community",
    }
)

_ANNOTATION = re.compile(r"^[\[(*♪♫].*|.*[\])*♪♫]$")
_OPENERS = {"[": "]", "(": ")", "*": "*"}
_NON_WORD = re.compile(r"[^\w']+")


@dataclass(frozen=True, slots=True)
class GuardConfig:
    silence_dbfs: float = -50.0  # loudest 30 ms frame below this: do not decode at all
    quiet_dbfs: float = -35.0  # a known phrase on audio this quiet is a hallucination
    min_confidence: float = 0.6  # a known phrase decoded less surely than this is a hallucination
    max_repeats: int = 3  # an n-gram repeated more often than this in a row is a loop...
    phrase_words: int = 4  # ...and a phrase this long is one as soon as it comes twice
    max_ngram: int = 16  # a whole sentence said again is a loop too


def norm_word(word: str) -> str:
    """A word for comparison: lower case, no punctuation (apostrophes kept)."""
    return _NON_WORD.sub("", word.lower())


def norm_text(text: str) -> str:
    return " ".join(w for w in (norm_word(t) for t in text.replace("_", " ").split()) if w)


def peak_frame_dbfs(audio: npt.NDArray[np.float32], frame: int = FRAME) -> float:
    """RMS level of the loudest frame, in dBFS (-inf-safe: silence gives -120)."""
    n = len(audio) // frame
    if n == 0:
        rms = float(np.sqrt(np.mean(np.square(audio)))) if len(audio) else 0.0
    else:
        frames = audio[: n * frame].reshape(n, frame).astype(np.float64)
        rms = float(np.sqrt(np.square(frames).mean(axis=1)).max())
    return 20.0 * float(np.log10(max(rms, 1e-6)))


def is_near_silent(audio: npt.NDArray[np.float32], config: GuardConfig = GuardConfig()) -> bool:
    """True when no frame is loud enough to be speech, so decoding would only invite a hallucination."""
    return peak_frame_dbfs(audio) < config.silence_dbfs


def _closer(word: str) -> str | None:
    """The closing mark an annotation opened by ``word`` waits for, if it is left open."""
    body = word.rstrip(".,!?;:")
    closer = _OPENERS.get(body[:1])
    if closer is None or (len(body) > 1 and body.endswith(closer)):
        return None
    return closer


def annotation_keep(words: Sequence[str]) -> list[int]:
    """Indices of words outside non-speech annotations: ``[BLANK_AUDIO]``, ``(wind blowing)``, ``♪``."""
    keep: list[int] = []
    waiting: str | None = None
    for i, word in enumerate(words):
        body = word.strip().rstrip(".,!?;:")
        if waiting is not None:
            if body.endswith(waiting):
                waiting = None
            continue
        waiting = _closer(word.strip())
        if waiting is None and not _ANNOTATION.match(body) and any(c.isalnum() for c in body):
            keep.append(i)
    return keep


def is_hallucination(
    text: str, *, confidence: float | None, peak_dbfs: float, config: GuardConfig = GuardConfig()
) -> bool:
    """A known silence phrase that was decoded unsurely or from quiet audio."""
    if norm_text(text) not in KNOWN_HALLUCINATIONS:
        return False
    unsure = confidence is None or confidence < config.min_confidence
    return unsure or peak_dbfs < config.quiet_dbfs


def _run_length(words: Sequence[str], start: int, n: int) -> int:
    """How many times ``words[start:start+n]`` repeats back to back from ``start``."""
    gram = words[start : start + n]
    count = 1
    while words[start + count * n : start + (count + 1) * n] == gram:
        count += 1
    return count


def _loop_at(words: Sequence[str], i: int, config: GuardConfig) -> tuple[int, int] | None:
    """(n, count) when an n-gram starting at ``i`` repeats back to back too often."""
    for n in range(1, config.max_ngram + 1):
        if i + n > len(words) or not all(words[i : i + n]):
            return None
        count = _run_length(words, i, n)
        if count > (config.max_repeats if n < config.phrase_words else 1):
            return n, count
    return None


def _cut_off_copy(words: Sequence[str], i: int, config: GuardConfig) -> int | None:
    """n when ``words[i:]`` is an n-word phrase and then its first words again up to the end,
    the last one perhaps cut short: Whisper started the phrase over and ran out of audio
    (seen on windows cut to the clip's length)."""
    for n in range(config.phrase_words + 1, config.max_ngram + 1):
        copy = words[i + n :]
        if len(copy) > n:
            continue
        if len(copy) < config.phrase_words:
            return None
        *whole, last = copy
        phrase = words[i : i + n]
        if (
            list(whole) == list(phrase[: len(whole)])
            and last
            and phrase[len(whole)].startswith(last)
        ):
            return n
    return None


def repetition_keep(words: Sequence[str], config: GuardConfig = GuardConfig()) -> list[int]:
    """Indices to keep after collapsing each loop (an n-gram repeated > max_repeats times) to one
    copy, and dropping a phrase's copy that the decode's end cut off."""
    normed = [norm_word(w) for w in words]
    keep: list[int] = []
    i = 0
    while i < len(normed):
        loop = _loop_at(normed, i, config)
        cut_off = _cut_off_copy(normed, i, config) if loop is None else None
        if cut_off is not None:
            keep.extend(range(i, i + cut_off))
            break
        if loop is None:
            keep.append(i)
            i += 1
        else:
            n, count = loop
            keep.extend(range(i, i + n))
            i += n * count
            # a loop that the token cap cut off mid-phrase leaves the phrase's head behind it
            head = 0
            while (
                head < n - 1 and i + head < len(normed) and normed[i + head] == normed[i - n + head]
            ):
                head += 1
            if head >= min(config.phrase_words, n - 1) and i + head == len(normed):
                i += head
    return keep


def copy_past_end(
    words: Sequence[str], starts_s: Sequence[float], audio_s: float, slack_s: float = 0.05
) -> int:
    """How many of the last words to drop: those Whisper placed at the clip's very end (where no
    audio is left for them) that repeat the words right before them ("but she said, but she
    said." from 1.3 s of speech). A word merely timed late does not repeat its predecessors."""
    normed = [norm_word(w) for w in words]
    past = 0
    while past < len(starts_s) and starts_s[-1 - past] >= audio_s - slack_s:
        past += 1
    for k in range(min(past, len(normed) // 2), 0, -1):
        if normed[-k:] == normed[-2 * k : -k] and all(normed[-k:]):
            return k
    return 0


def boundary_overlap(prev_tail: Sequence[str], head: Sequence[str], max_words: int = 6) -> int:
    """How many leading ``head`` words repeat the last words of the previous final (0 if none)."""
    tail = [norm_word(w) for w in prev_tail]
    first = [norm_word(w) for w in head]
    for k in range(min(max_words, len(tail), len(first)), 0, -1):
        if tail[-k:] == first[:k] and all(first[:k]):
            return k
    return 0


def screen(
    words: Sequence[DecodedWord],
    *,
    confidence: float | None,
    peak_dbfs: float,
    audio_s: float,
    config: GuardConfig = GuardConfig(),
) -> tuple[tuple[DecodedWord, ...], Rejection | None]:
    """A decode's words without annotations, loops and copies past the audio's end, or none and
    why when it is not speech."""
    kept = [words[i] for i in annotation_keep([w.text for w in words])]
    kept = [kept[i] for i in repetition_keep([w.text for w in kept], config)]
    copied = copy_past_end([w.text for w in kept], [w.start_s for w in kept], audio_s)
    kept = kept[: len(kept) - copied]
    if words and not kept:
        return (), "non_speech"
    text = " ".join(w.text for w in kept)
    if is_hallucination(text, confidence=confidence, peak_dbfs=peak_dbfs, config=config):
        return (), "hallucination"
    return tuple(kept), None
