"""Offline faster-whisper pass over a whole WAV, run by the peer's own interpreter.

It gives the word clock (each word's start and end in the audio, from faster-whisper's word
timestamps) that the streaming words are mapped onto, and the same model's offline transcript:
the accuracy the streaming policy could reach. It uses WhisperLiveKit's own decoding settings
(``FasterWhisperASR``: device and compute type ``auto``, beam 5, word timestamps).

Usage: ``.peer-venv/bin/python offline_words.py <wav> <model_dir>``; JSON on stdout.
Only the standard library and faster-whisper: it must not import the project.
"""

from __future__ import annotations

import json
import resource
import sys


def main() -> int:
    from faster_whisper import WhisperModel  # type: ignore[import-not-found]

    wav, model_dir = sys.argv[1], sys.argv[2]
    model = WhisperModel(model_dir, device="auto", compute_type="auto")
    before = resource.getrusage(resource.RUSAGE_SELF)
    segments, _ = model.transcribe(
        wav, language="en", beam_size=5, word_timestamps=True, condition_on_previous_text=True
    )
    words = [
        {"text": word.word, "start": float(word.start), "end": float(word.end)}
        for segment in segments
        for word in segment.words or []
    ]
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    text = "".join(str(w["text"]) for w in words).strip()
    # what "auto" resolved to here, which is also what the server's FasterWhisperASR got
    compute_type = f"{model.model.device} {model.model.compute_type}"
    json.dump(
        {"text": text, "words": words, "cpu_s": cpu_s, "compute_type": compute_type}, sys.stdout
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
