"""The limit a streaming system is compared with: the same model decoding each talk in one call.

Runs in its own process (``python -m bench.offline``) so that its CPU time, read with
``getrusage`` around each call, is the engine's alone, with the same number of threads:

* whisper.cpp: the worker's own ``WhisperTranscriber`` (the same parameters and guards as a final,
  with Whisper's full 30 s encoder window and its temperature fallback);
* faster-whisper: the library's own ``WhisperModel.transcribe`` on the same CTranslate2 directory
  and compute type as the worker, greedy (as the worker's finals), its long-form loop over 30 s
  windows, no word timestamps: the plain offline call the streaming worker is held against.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from bench.paths import bench_pythonpath


@dataclass(frozen=True)
class OfflineResult:
    text: str
    audio_s: float
    wall_s: float
    cpu_s: float


def decode_offline(
    model: Path,
    threads: int,
    audio: Mapping[str, npt.NDArray[np.int16]],
    workdir: Path,
    engine: str = "whisper",
) -> dict[str, OfflineResult]:
    """Decode each named clip in a fresh process; CPU and wall time per clip."""
    workdir.mkdir(parents=True, exist_ok=True)
    clips = workdir / f"offline_audio_{engine}.npz"
    out = workdir / f"offline_{engine}.json"
    np.savez(clips, *audio.values())  # stored as arr_0, arr_1, ...
    env = {
        **os.environ,
        "PYTHONPATH": bench_pythonpath(),
    }
    command = [sys.executable, "-m", "bench.offline", "--model", str(model)]
    command += ["--threads", str(threads), "--clips", str(clips), "--out", str(out)]
    command += ["--engine", engine]
    subprocess.run(command, env=env, check=True)
    rows = json.loads(out.read_text())
    return {name: OfflineResult(**rows[f"arr_{i}"]) for i, name in enumerate(audio)}


async def _decode_all(model: Path, threads: int, clips: Path) -> dict[str, dict[str, object]]:
    from whisper_worker.transcriber import TranscriberConfig, WhisperTranscriber

    results: dict[str, dict[str, object]] = {}
    # Whisper's full 30 s window: the limit is the plain one-call decode, whatever finals use
    config = TranscriberConfig(model_path=model, threads=threads, workers=1, final_ctx_margin=0)
    async with WhisperTranscriber(config) as transcriber:
        await transcriber.warm_up()
        with np.load(clips) as data:
            for name in data.files:
                pcm = np.asarray(data[name], dtype=np.int16)
                audio = pcm.astype(np.float32) / 32768.0
                cpu0, wall0 = _cpu_s(), time.perf_counter()
                decoded = await transcriber.transcribe(audio, purpose="final")
                wall, cpu = time.perf_counter() - wall0, _cpu_s() - cpu0
                result = OfflineResult(decoded.text, len(pcm) / 16_000, wall, cpu)
                results[name] = asdict(result)
    return results


def _decode_all_fasterwhisper(threads: int, clips: Path) -> dict[str, dict[str, object]]:
    from fasterwhisper_worker.config import FasterWhisperWorkerSettings
    from fasterwhisper_worker.model_dir import validate_model_dir
    from fasterwhisper_worker.transcriber import FasterWhisperConfig, load_model

    settings = FasterWhisperWorkerSettings()
    directory = validate_model_dir(settings.model_dir, settings.model_sha256)
    model = load_model(
        FasterWhisperConfig(directory, compute_type=settings.compute_type, threads=threads)
    )
    results: dict[str, dict[str, object]] = {}
    warm = np.random.default_rng(0).normal(0, 0.1, 16_000).astype(np.float32)
    list(model.transcribe(warm, language="en", beam_size=1)[0])
    with np.load(clips) as data:
        for name in data.files:
            pcm = np.asarray(data[name], dtype=np.int16)
            audio = pcm.astype(np.float32) / 32768.0
            cpu0, wall0 = _cpu_s(), time.perf_counter()
            segments, _ = model.transcribe(
                audio, language="en", beam_size=1, temperature=0.0, word_timestamps=False
            )
            text = " ".join(segment.text.strip() for segment in segments)
            wall, cpu = time.perf_counter() - wall0, _cpu_s() - cpu0
            results[name] = asdict(OfflineResult(text, len(pcm) / 16_000, wall, cpu))
    return results


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clips", type=Path, required=True, help=".npz of int16 16 kHz clips")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--engine", choices=("whisper", "fasterwhisper"), default="whisper")
    args = parser.parse_args()
    if args.engine == "fasterwhisper":
        results = _decode_all_fasterwhisper(args.threads, args.clips)
    else:
        results = asyncio.run(_decode_all(args.model, args.threads, args.clips))
    args.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
