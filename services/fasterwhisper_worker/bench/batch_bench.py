"""Batched against one-at-a-time decoding in one faster-whisper worker process, in the same run.

For each level N, N ``transcribe`` calls are made at once, as N streams of one worker make them:
a mix of finals (whole dev-split utterances of 5-25 s) and partials of 1-5 s (see ``mixes``), one
final for every three partials.
Each variant (batch cap, threads, decoders; cap 1 is the path before batching: one clip at a
time) runs the same clips, variants alternating, ``--repeats`` times. Reported per level and cap: wall time of the N calls, process
CPU-s per audio-s, time from the call to its result for finals and partials, and whether the
clips' apportioned ``cpu_s`` add up to the process CPU time.

Then accuracy: every dev utterance of at most 25 s decoded as a final, all at once by the variant
of the largest cap and one at a time by the smallest: WER of each against the references, and the words on which they differ.

    .venv/bin/python services/fasterwhisper_worker/bench/batch_bench.py \\
        --out bench-results/fasterwhisper-batch.json

Environment knobs of CTranslate2 (e.g. ``OMP_WAIT_POLICY=ACTIVE``) apply when set before the
command; ``--variants`` lists the settings compared (batch cap / ``THREADS`` / ``DECODERS``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "tests"))

from speech_corpus import SpeechItem, load_items, normalize, read_wav, to_float32, wer  # noqa: E402

from echostream_shared.segmented.decoding import Decoded, Purpose  # noqa: E402
from fasterwhisper_worker.model_dir import validate_model_dir  # noqa: E402
from fasterwhisper_worker.transcriber import (  # noqa: E402
    FasterWhisperConfig,
    FasterWhisperTranscriber,
)

RATE = 16_000


@dataclass(frozen=True)
class Call:
    audio: npt.NDArray[np.float32]
    purpose: Purpose
    prompt: str | None


@dataclass(frozen=True)
class Variant:
    """A worker's settings: batch cap (1: one clip at a time), CTranslate2 threads, decoders."""

    cap: int
    threads: int
    decoders: int

    @classmethod
    def parse(cls, text: str) -> Variant:
        cap, threads, decoders = (int(part) for part in text.split("/"))
        return cls(cap, threads, decoders)


@dataclass
class Level:
    clips: int
    cap: int
    threads: int
    decoders: int
    finals: int
    audio_s: float
    wall_s: float  # median over repeats
    cpu_per_audio_s: float  # median over repeats
    apportioned_share: float  # sum of the clips' cpu_s / process CPU time
    final_latency_p50_s: float
    final_latency_max_s: float
    partial_latency_p50_s: float
    partial_latency_max_s: float


def mixes(items: list[SpeechItem], clips: int, seed: int) -> list[Call]:
    """``clips`` calls from dev speech, as the policy makes them: a final (a whole utterance) for
    every three partials (at least one final). Half the partials are the first 1-5 s of a segment,
    unprompted; the others the last 2.5-5 s of a longer one, prompted with the 8 words before."""
    rng = random.Random(seed)
    long = [i for i in items if 5 <= i.duration_s <= 25]
    finals = max(1, round(clips / 4))
    calls = []
    for n in range(clips):
        item = rng.choice(long)
        audio = to_float32(read_wav(item.path))
        if n < finals:
            calls.append(Call(audio, "final", None))
        elif n % 2:
            calls.append(Call(audio[: int(rng.uniform(1.0, 5.0) * RATE)], "partial", None))
        else:
            length = rng.uniform(2.5, 5.0)
            start = rng.uniform(2.0, item.duration_s - length)
            words = normalize(item.text).split()
            said = round(len(words) * start / item.duration_s)  # words spoken before the clip
            clip = audio[int(start * RATE) : int((start + length) * RATE)]
            calls.append(Call(clip, "partial", " ".join(words[max(0, said - 8) : said]) or None))
    rng.shuffle(calls)  # finals arrive among partials
    return calls


def emit(row: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(row) + "\n")
    sys.stdout.flush()


async def timed(transcriber: FasterWhisperTranscriber, call: Call) -> tuple[Decoded, float]:
    t0 = time.perf_counter()
    decoded = await transcriber.transcribe(call.audio, purpose=call.purpose, prompt=call.prompt)
    return decoded, time.perf_counter() - t0


async def run_once(
    transcriber: FasterWhisperTranscriber, calls: list[Call]
) -> tuple[float, float, list[tuple[Decoded, float]]]:
    """Wall and process CPU time of the calls made at once, and each call's result and latency."""
    wall0, cpu0 = time.perf_counter(), time.process_time()
    results = await asyncio.gather(*(timed(transcriber, call) for call in calls))
    return time.perf_counter() - wall0, time.process_time() - cpu0, list(results)


async def levels(
    transcribers: dict[Variant, FasterWhisperTranscriber],
    items: list[SpeechItem],
    sizes: list[int],
    repeats: int,
) -> list[Level]:
    out = []
    for clips in sizes:
        calls = mixes(items, clips, seed=clips)
        audio_s = sum(len(c.audio) for c in calls) / RATE
        runs: dict[Variant, list[tuple[float, float, list[tuple[Decoded, float]]]]] = {
            variant: [] for variant in transcribers
        }
        for _ in range(repeats):
            for variant, transcriber in transcribers.items():
                runs[variant].append(await run_once(transcriber, calls))
        for variant, done in runs.items():
            finals = [lat for _, _, res in done for d, lat in res if d.purpose == "final"]
            partials = [lat for _, _, res in done for d, lat in res if d.purpose == "partial"]
            apportioned = sum(d.cpu_s for _, _, res in done for d, _ in res)
            out.append(
                Level(
                    clips=clips,
                    cap=variant.cap,
                    threads=variant.threads,
                    decoders=variant.decoders,
                    finals=sum(c.purpose == "final" for c in calls),
                    audio_s=round(audio_s, 1),
                    wall_s=round(statistics.median(w for w, _, _ in done), 3),
                    cpu_per_audio_s=round(statistics.median(c for _, c, _ in done) / audio_s, 4),
                    apportioned_share=round(apportioned / sum(c for _, c, _ in done), 3),
                    final_latency_p50_s=round(statistics.median(finals), 3),
                    final_latency_max_s=round(max(finals), 3),
                    partial_latency_p50_s=round(statistics.median(partials), 3) if partials else 0,
                    partial_latency_max_s=round(max(partials), 3) if partials else 0,
                )
            )
            emit(asdict(out[-1]))
    return out


async def accuracy(
    transcribers: dict[Variant, FasterWhisperTranscriber], items: list[SpeechItem]
) -> dict[str, Any]:
    """Dev finals batched (the largest cap, all at once) and one at a time, against references."""
    chosen = [i for i in items if i.duration_s <= 25]
    audios = [to_float32(read_wav(i.path)) for i in chosen]
    serial = transcribers[min(transcribers, key=lambda v: v.cap)]
    batched = transcribers[max(transcribers, key=lambda v: v.cap)]
    one = [await serial.transcribe(a, purpose="final") for a in audios]
    many = await asyncio.gather(*(batched.transcribe(a, purpose="final") for a in audios))
    refs = [normalize(i.text) for i in chosen]
    alone = [normalize(d.text) for d in one]
    together = [normalize(d.text) for d in many]
    return {
        "utterances": len(chosen),
        "audio_s": round(sum(i.duration_s for i in chosen), 1),
        "wer_one_at_a_time": round(wer(refs, alone), 4),
        "wer_batched": round(wer(refs, together), 4),
        "wer_batched_vs_one_at_a_time": round(wer(alone, together), 4),
        "utterances_differing": sum(a != b for a, b in zip(alone, together, strict=True)),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", default="1,4,8,16")
    parser.add_argument(
        "--variants",
        default="1/2/1,1/1/2,16/2/1,16/1/2",
        help="cap/threads/decoders, comma-separated; cap 1 is one clip at a time",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    items = load_items("dev")
    model = validate_model_dir(None, None)
    variants = [Variant.parse(text) for text in args.variants.split(",")]
    transcribers = {
        v: FasterWhisperTranscriber(
            FasterWhisperConfig(
                model=model, threads=v.threads, decoders=v.decoders, batch_max=v.cap
            )
        )
        for v in variants
    }
    for transcriber in transcribers.values():
        await transcriber.warm_up()
    report: dict[str, Any] = {
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "cpus": os.cpu_count(),
        "levels": [
            asdict(level)
            for level in await levels(
                transcribers, items, [int(n) for n in args.levels.split(",")], args.repeats
            )
        ],
    }
    if not args.skip_accuracy:
        report["accuracy"] = await accuracy(transcribers, items)
        emit(report["accuracy"])
    for transcriber in transcribers.values():
        await transcriber.aclose()
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
