"""The ``echostream`` command line client against a running capture service."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import numpy as np
from bus_reading import BusRecorder
from capture_audio import conversation, encode
from capture_harness import MAX_WER, WORDED, WORKER_SETTINGS, StartCapture
from fasterwhisper_inprocess import ENGINE
from nats_server import free_port
from speech_corpus import wer
from waiting import wait_until

from echostream_shared.jobs.worker import JobWorker


async def echostream(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "capture.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def said(out: str) -> str:
    """The transcript the client printed, without the time stamps."""
    return " ".join(line.split("] ", 1)[1] for line in out.splitlines())


async def test_a_file_is_streamed_with_progress_and_its_transcript_printed(
    worker: JobWorker, start_capture: StartCapture, tmp_path: Path
) -> None:
    capture = await start_capture(engines=("whisper", ENGINE))  # whisper is the default
    speech = conversation(names=WORDED)
    path = encode(speech.pcm, tmp_path / "talk.mp3", "libmp3lame", 44100, 2)
    code, out, err = await echostream(str(path), "--url", capture.ws, "--engine", ENGINE)
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) >= 3 and all(line.startswith("[00:") for line in lines)
    assert wer(speech.text, said(out)) <= MAX_WER, out
    shares = [int(share) for share in re.findall(r"\((\d+)%\)", err)]
    assert shares == sorted(shares) and shares[-1] == 100, err


async def test_errors_exit_non_zero_with_a_message(
    start_capture: StartCapture, tmp_path: Path
) -> None:
    capture = await start_capture(token="s3cret", finish_timeout_s=2)
    path = encode(
        conversation(names=("hello_world",)).pcm, tmp_path / "a.wav", "pcm_s16le", 16000, 1
    )
    code, _, err = await echostream(str(path), "--url", capture.ws, "--token", "wrong")
    assert code == 1 and "missing or wrong token" in err
    code, _, err = await echostream(str(path), "--url", f"ws://127.0.0.1:{free_port()}")
    assert code == 1 and "cannot connect" in err
    (tmp_path / "notes.txt").write_text("not audio")
    code, _, err = await echostream(str(tmp_path / "notes.txt"), "--url", capture.ws)
    assert code == 1 and "cannot decode audio" in err
    code, _, err = await echostream(str(path), "--url", capture.ws, "--token", "s3cret")
    assert code == 1 and "before everything was transcribed" in err, "no worker: incomplete"


FAKE_SOUNDDEVICE = '''
import os, threading, time
import numpy as np

class InputStream:
    """Plays a .npy file of float32 samples through the callback, 100 ms at a time, 4x fast."""

    def __init__(self, samplerate, channels, dtype, callback):
        self._audio = np.load(os.environ["FAKE_MIC_NPY"])
        self._callback = callback
        self._stop = threading.Event()

    def __enter__(self):
        threading.Thread(target=self._play, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self._stop.set()

    def _play(self):
        for k in range(0, len(self._audio), 1600):
            if self._stop.is_set():
                return
            block = self._audio[k : k + 1600]
            self._callback(block.reshape(-1, 1), len(block), None, None)
            time.sleep(0.025)
'''


async def test_the_microphone_streams_until_ctrl_c(
    worker: JobWorker, start_capture: StartCapture, recorder: BusRecorder, tmp_path: Path
) -> None:
    capture = await start_capture(**WORKER_SETTINGS)
    (tmp_path / "sounddevice.py").write_text(FAKE_SOUNDDEVICE)
    talk = conversation(names=("quick_brown_fox", "quick_brown_fox"))
    speech = talk.pcm
    np.save(tmp_path / "mic.npy", (speech / 32768).astype(np.float32))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "capture.cli",
        "--mic",
        "--url",
        capture.ws,
        env={**os.environ, "PYTHONPATH": str(tmp_path), "FAKE_MIC_NPY": str(tmp_path / "mic.npy")},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    # Ctrl-C once the microphone's audio is on the bus (a loaded machine starts slowly).
    await wait_until(lambda: bool(recorder.chunks()), 30, "microphone audio on the bus")
    await asyncio.sleep(len(speech) / 16000 / 4 + 1.5)
    process.send_signal(signal.SIGINT)
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    assert "listening" in err.decode()
    assert wer(talk.text, said(out.decode())) <= MAX_WER, out.decode()
