"""Write a dev-split passage of the speech corpus as a WAV and its reference text (outside the
repository), for trying the peer on minutes of consecutive speech.

``PYTHONPATH=tests .venv/bin/python -m peer.passage --source ljspeech --seconds 240 --out /tmp/lj.wav``
writes ``/tmp/lj.wav`` and ``/tmp/lj.txt``. Utterances are taken in id order (LJ Speech
LJ001-0001… is one continuous reading) and joined by ``speech_corpus.passage``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from speech_corpus import SpeechItem, corpus_dir, load_items, passage

from peer.run import write_wav


def pick(items: list[SpeechItem], source: str, seconds: float) -> list[SpeechItem]:
    """Items of ``source`` in id order, whole, until ``seconds`` of speech are reached."""
    chosen: list[SpeechItem] = []
    total = 0.0
    for found in sorted((i for i in items if i.source.startswith(source)), key=lambda i: i.id):
        if total >= seconds:
            break
        chosen.append(found)
        total += found.duration_s
    if not chosen:
        sources = sorted({i.source for i in items})
        raise ValueError(f"no dev items from source {source!r}; sources: {sources}")
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m peer.passage", description=__doc__)
    parser.add_argument("--source", default="ljspeech", help="manifest 'source' prefix")
    parser.add_argument("--seconds", type=float, default=60.0, help="speech to take, at least")
    parser.add_argument("--out", type=Path, required=True, help="the WAV; the .txt goes beside it")
    args = parser.parse_args(argv)
    if not (corpus_dir() / "manifest.jsonl").is_file():
        parser.error(f"speech corpus not found at {corpus_dir()} (set ECHOSTREAM_SPEECH_DIR)")
    chosen = pick(load_items("dev"), args.source, args.seconds)
    joined = passage(chosen)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_wav(args.out, joined.pcm)
    args.out.with_suffix(".txt").write_text(joined.text + "\n", encoding="utf-8")
    print(f"{len(chosen)} utterances, {joined.duration_s:.1f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
