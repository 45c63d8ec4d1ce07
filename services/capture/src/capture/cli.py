"""``echostream``: stream a file or the microphone to a capture server and print the transcript.

Exit status: 0 when everything was transcribed, 1 on any error (connection, token, decoding,
a server error, an incomplete transcription), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from capture.audio import AudioDecodeError, Floats, decode_file, probe_duration

EXIT_OK, EXIT_FAILED = 0, 1
FRAME_S = 0.1
MIC_RATE = 16_000


class CliError(Exception):
    """Something the user must hear about; the command exits with 1."""


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return asyncio.run(_run(args))
    except CliError as exc:
        sys.stderr.write(f"echostream: {exc}\n")
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_FAILED


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="echostream", description="Stream audio to EchoStream and print the live transcript."
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("file", nargs="?", type=Path, help="an audio or video file to transcribe")
    what.add_argument("--mic", action="store_true", help="stream the default microphone")
    parser.add_argument(
        "--url", default=os.environ.get("ECHOSTREAM_URL", "ws://127.0.0.1:8000"), help="server"
    )
    parser.add_argument("--token", default=os.environ.get("ECHOSTREAM_TOKEN"), help="bearer token")
    parser.add_argument("--engine", help="engine whose transcript to show")
    parser.add_argument(
        "--speed", type=float, default=0.0, help="file pace in × real time; 0: as fast as possible"
    )
    parser.add_argument("--json", action="store_true", help="print events as JSON lines")
    parser.add_argument("--quiet", action="store_true", help="no progress or partials on stderr")
    return parser


async def _run(args: argparse.Namespace) -> int:
    url = args.url.rstrip("/") + "/v1/stream"
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    printer = Printer(sys.stdout, sys.stderr, as_json=args.json, quiet=args.quiet)
    if args.mic:
        rate, blocks, source = MIC_RATE, _mic_blocks(), "mic"
    else:
        rate, blocks = await _file_blocks(args.file)
        printer.duration_s = await asyncio.to_thread(probe_duration, args.file)
        source = "file"
    try:
        async with connect(url, additional_headers=headers, max_size=None) as ws:
            return await _session(ws, printer, blocks, rate, source, args)
    except (OSError, InvalidHandshake, InvalidURI) as exc:
        raise CliError(f"cannot connect to {url}: {exc}") from exc


async def _session(
    ws: ClientConnection,
    printer: Printer,
    blocks: AsyncIterator[Floats],
    rate: int,
    source: str,
    args: argparse.Namespace,
) -> int:
    start: dict[str, Any] = {
        "type": "start",
        "sources": [source],
        "sample_rate": rate,
        "encoding": "pcm_f32le",
    }
    if args.engine:
        start["engine"] = args.engine
    receiving = asyncio.create_task(_receive(ws, printer))
    try:
        await ws.send(json.dumps(start))
        await _send_audio(ws, blocks, rate, args.speed, printer)
        await ws.send(json.dumps({"type": "end"}))
    except ConnectionClosed:
        pass
    return await receiving


async def _send_audio(
    ws: ClientConnection, blocks: AsyncIterator[Floats], rate: int, speed: float, printer: Printer
) -> None:
    loop = asyncio.get_running_loop()
    started, sent = loop.time(), 0
    frame = int(rate * FRAME_S)
    async for block in blocks:
        for offset in range(0, len(block), frame):
            part = block[offset : offset + frame]
            await ws.send(b"\x00" + part.astype("<f4").tobytes())
            sent += len(part)
            if speed > 0 and (ahead := sent / rate / speed - (loop.time() - started)) > 0:
                await asyncio.sleep(ahead)
        printer.progress(sent / rate)
    printer.sent_all(sent / rate)


async def _receive(ws: ClientConnection, printer: Printer) -> int:
    code = EXIT_FAILED
    with contextlib.suppress(ConnectionClosed):
        async for raw in ws:
            message = json.loads(raw)
            printer.event(message)
            if message["type"] == "error":
                printer.failed = True
            if message["type"] == "done":
                code = EXIT_OK if message["complete"] and not printer.failed else EXIT_FAILED
    printer.finish()
    if code and not printer.failed:
        printer.note("the server ended the session before everything was transcribed")
    return code


async def _file_blocks(path: Path) -> tuple[int, AsyncIterator[Floats]]:
    decoded = decode_file(path)
    try:
        first = await asyncio.to_thread(next, decoded, None)
    except AudioDecodeError as exc:
        raise CliError(f"{path}: {exc}") from exc
    except OSError as exc:
        raise CliError(f"{path}: {exc.strerror or exc}") from exc
    if first is None:
        raise CliError(f"{path}: no audio")

    async def rest() -> AsyncIterator[Floats]:
        yield first[1]
        while (item := await asyncio.to_thread(next, decoded, None)) is not None:
            yield item[1]

    return first[0], rest()


async def _mic_blocks() -> AsyncIterator[Floats]:
    try:
        sounddevice = importlib.import_module("sounddevice")  # the optional "mic" extra
    except (ImportError, OSError) as exc:
        raise CliError("--mic needs sounddevice: pip install 'echostream-capture[mic]'") from exc
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Floats | None] = asyncio.Queue()

    def captured(data: Any, _frames: int, _time: Any, _status: Any) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, np.array(data[:, 0], dtype=np.float32))

    loop.add_signal_handler(signal.SIGINT, queue.put_nowait, None)
    stream = sounddevice.InputStream(
        samplerate=MIC_RATE, channels=1, dtype="float32", callback=captured
    )
    sys.stderr.write("listening; Ctrl-C ends the session\n")
    with stream:
        while (block := await queue.get()) is not None:
            yield block
    loop.remove_signal_handler(signal.SIGINT)


class Printer:
    """Finals to stdout; progress, partials and problems to stderr."""

    def __init__(self, out: TextIO, err: TextIO, *, as_json: bool, quiet: bool) -> None:
        self.out, self.err = out, err
        self.as_json, self.quiet = as_json, quiet
        self.duration_s: float | None = None
        self.failed = False
        self._line_open = False
        self._shown_step = -1

    def event(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if self.as_json:
            self.out.write(json.dumps(message) + "\n")
            self.out.flush()
        elif kind == "final" and message["text"]:
            self._clear()
            stamp = f"[{_clock(message['start'])} - {_clock(message['end'])}]"
            self.out.write(f"{stamp} {message['text']}\n")
            self.out.flush()
        elif kind == "partial" and not self.quiet and self.err.isatty():
            self._status(f"… {message['text'][-70:]}")
        if kind in ("error", "backpressure"):
            self.note(f"{kind}: {message.get('message') or message.get('reason')}")

    def progress(self, sent_s: float) -> None:
        """Audio sent so far: a live line on a terminal, else a line per tenth (or 30 s)."""
        if self.quiet:
            return
        share = min(100.0, 100 * sent_s / self.duration_s) if self.duration_s else None
        step = int(share // 10) if share is not None else int(sent_s // 30)
        if not self.err.isatty() and step == self._shown_step:
            return
        self._shown_step = step
        total = f" / {_clock(self.duration_s)} ({share:.0f}%)" if self.duration_s else ""
        self._status(f"sent {_clock(sent_s)}{total}")

    def sent_all(self, sent_s: float) -> None:
        """The whole file is sent: 100 %, even where the probed duration was a little longer."""
        if self.duration_s is not None:
            self.duration_s = sent_s
        self.progress(sent_s)

    def note(self, text: str) -> None:
        self._clear()
        self.err.write(f"echostream: {text}\n")
        self.err.flush()

    def finish(self) -> None:
        self._clear()

    def _status(self, text: str) -> None:
        if self.err.isatty():
            self.err.write("\r\033[K" + text)
            self._line_open = True
        else:
            self.err.write(text + "\n")
        self.err.flush()

    def _clear(self) -> None:
        if self._line_open:
            self.err.write("\r\033[K")
            self._line_open = False


def _clock(seconds: float) -> str:
    minutes, secs = divmod(seconds, 60)
    return f"{int(minutes):02d}:{secs:05.2f}"


if __name__ == "__main__":
    sys.exit(main())
