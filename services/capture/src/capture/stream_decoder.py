"""A container stream (ogg/opus, webm, flac, …) that arrives in pieces, decoded by PyAV as it
comes: the demuxer reads from a pipe in a worker thread and hands each decoded block back to the
event loop, in order, waiting until it is taken (so a slow bus slows the decoder, not memory).

WAV is read by its header instead: after it the stream is raw PCM, and FFmpeg's WAV demuxer would
hold back two seconds of it."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import queue
import struct
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass

import av
import numpy as np
import numpy.typing as npt

from capture.audio import AudioFormat, Encoding

Block = npt.NDArray[np.float32]
"""Decoded samples, shape (frames, channels), float32 in [-1, 1]."""
OnDecoded = Callable[[int, int, Block], Coroutine[None, None, None]]
"""Receives (sample rate, channels, block)."""

PROBE_BYTES = 16_384
"""How much the demuxer may read to recognize the container: a few hundred ms of compressed audio."""


class DecodeFailed(Exception):
    """The stream is not audio PyAV can decode."""


_WAV_ENCODINGS: dict[tuple[int, int], Encoding] = {
    (1, 16): "pcm_s16le",
    (1, 32): "pcm_s32le",
    (3, 32): "pcm_f32le",
    (6, 8): "alaw",
    (7, 8): "mulaw",
}
_EXTENSIBLE = 0xFFFE
WAV_HEADER_MAX = 65_536


@dataclass(frozen=True)
class WavStart:
    """A WAV stream's format and where its samples begin."""

    format: AudioFormat
    data_offset: int


def is_wav(head: bytes) -> bool:
    return len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WAVE"


def wav_start(head: bytes) -> WavStart | None:
    """Read a WAV header from the stream's first bytes; None until the ``data`` chunk begins.

    Raises:
        ValueError: a WAV whose samples are not plain PCM, float or G.711 (PyAV decodes those).
    """
    offset, fmt = 12, None
    while offset + 8 <= len(head):
        chunk, size = struct.unpack_from("<4sI", head, offset)
        body = offset + 8
        if chunk == b"data":
            if fmt is None:
                raise ValueError("the data chunk comes before the fmt chunk")
            return WavStart(fmt, body)
        if chunk == b"fmt ":
            if body + 16 > len(head):
                return None
            code, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", head, body)
            if code == _EXTENSIBLE and size >= 40 and body + 26 <= len(head):
                code = struct.unpack_from("<H", head, body + 24)[0]
            encoding = _WAV_ENCODINGS.get((code, bits))
            if encoding is None or channels < 1 or rate < 1:
                raise ValueError(f"WAV format {code} with {bits} bits is not raw PCM")
            fmt = AudioFormat(rate, channels, encoding)
        offset = body + size + (size & 1)
    return None


class _Pipe:
    """A read-only, non-seekable file whose bytes are pushed from another thread."""

    def __init__(self) -> None:
        self._chunks: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._buffer = bytearray()
        self._eof = False

    def push(self, data: bytes | None) -> None:
        self._chunks.put(data)

    def read(self, size: int = -1) -> bytes:
        while not self._buffer and not self._eof:
            chunk = self._chunks.get()
            if chunk is None:
                self._eof = True
            else:
                self._buffer += chunk
        size = len(self._buffer) if size < 0 else size
        out = bytes(self._buffer[:size])
        del self._buffer[:size]
        return out


class ContainerDecoder:
    """Decodes one container stream fed by ``feed``; ``finish`` waits for its last block."""

    def __init__(self, on_decoded: OnDecoded) -> None:
        self._on_decoded = on_decoded
        self._pipe = _Pipe()
        self._loop = asyncio.get_running_loop()
        self._done: asyncio.Future[str | None] = self._loop.create_future()
        self._thread: threading.Thread | None = None
        self._closed = False

    async def feed(self, data: bytes) -> None:
        """Queue bytes for the decoder; raises ``DecodeFailed`` once the stream proved undecodable."""
        if self._done.done():
            self._raise_failure()
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="container-decoder", daemon=True)
            self._thread.start()
        self._pipe.push(data)

    async def finish(self) -> None:
        """End of input: wait until every decoded block was delivered."""
        if self._thread is None:
            return
        self._pipe.push(None)
        await asyncio.shield(self._done)
        self._raise_failure()

    async def close(self) -> None:
        """Stop feeding; a decoder still running finishes on what it has."""
        if self._thread is not None and not self._closed:
            self._closed = True
            self._pipe.push(None)

    def _raise_failure(self) -> None:
        if self._done.done() and (failure := self._done.result()) is not None:
            raise DecodeFailed(failure)

    def _run(self) -> None:
        failure: str | None = None
        try:
            self._decode()
        except (av.FFmpegError, DecodeFailed, ValueError) as exc:
            failure = f"the stream cannot be decoded as audio: {exc}"
        except Exception as exc:  # the event loop refused a block (e.g. the connection ended)
            failure = f"decoding stopped: {type(exc).__name__}"
        with contextlib.suppress(RuntimeError):  # the loop is gone
            self._loop.call_soon_threadsafe(_settle, self._done, failure)

    def _decode(self) -> None:
        options = {"probesize": str(PROBE_BYTES), "analyzeduration": "100000"}
        with av.open(
            self._pipe, mode="r", options=options, buffer_size=4096, metadata_errors="replace"
        ) as container:
            if not container.streams.audio:
                raise DecodeFailed("no audio stream")
            stream = container.streams.audio[0]
            resampler: av.AudioResampler | None = None
            for frame in container.decode(stream):
                if resampler is None:
                    resampler = av.AudioResampler(format="flt", layout=frame.layout.name)
                channels = frame.layout.nb_channels
                for packed in resampler.resample(frame):
                    block = packed.to_ndarray().reshape(-1, channels).astype(np.float32)
                    delivered: concurrent.futures.Future[None] = asyncio.run_coroutine_threadsafe(
                        self._on_decoded(packed.sample_rate, channels, block), self._loop
                    )
                    delivered.result()


def _settle(done: asyncio.Future[str | None], failure: str | None) -> None:
    if not done.done():
        done.set_result(failure)
