"""The limit a streaming system is compared with: the same model decoding each talk in one call.

Runs in its own process (``python -m bench.offline``) so that its CPU time, read with
``getrusage`` around each call, is whisper.cpp's alone. It uses the worker's own
``WhisperTranscriber`` (the same parameters and guards as a final, with Whisper's full 30 s
encoder window and its temperature fallback) and the same number of threads.
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

TESTS = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class OfflineResult:
    text: str
    audio_s: float
    wall_s: float
    cpu_s: float


def decode_offline(
    model: Path, threads: int, audio: Mapping[str, npt.NDArray[np.int16]], workdir: Path
) -> dict[str, OfflineResult]:
    """Decode each named clip in a fresh process; CPU and wall time per clip."""
    workdir.mkdir(parents=True, exist_ok=True)
    clips = workdir / "offline_audio.npz"
    out = workdir / "offline.json"
    np.savez(clips, *audio.values())  # stored as arr_0, arr_1, ...
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])),
    }
    command = [sys.executable, "-m", "bench.offline", "--model", str(model)]
    command += ["--threads", str(threads), "--clips", str(clips), "--out", str(out)]
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


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clips", type=Path, required=True, help=".npz of int16 16 kHz clips")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    results = asyncio.run(_decode_all(args.model, args.threads, args.clips))
    args.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
