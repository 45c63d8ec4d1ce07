"""Client audio as a byte stream: a chunk may end inside a sample frame, its rest waits for the
next chunk. Deepgram's binary frames and OpenAI's ``input_audio_buffer.append`` events both
split audio anywhere; only what is left over when the stream ends (or is committed) is an error.
"""

from __future__ import annotations


class FrameCarry:
    """Cuts a byte stream into whole frames of ``frame_bytes``, keeping a split frame's head."""

    def __init__(self, frame_bytes: int) -> None:
        if frame_bytes < 1:
            raise ValueError("frame_bytes must be at least 1")
        self.frame_bytes = frame_bytes
        self._carry = b""

    @property
    def pending(self) -> int:
        """Bytes of a frame begun but not finished."""
        return len(self._carry)

    def push(self, data: bytes) -> bytes:
        """The whole frames of what was carried plus ``data``; the rest is kept."""
        data = self._carry + data
        whole = len(data) - len(data) % self.frame_bytes
        self._carry = data[whole:]
        return data[:whole]

    def drop(self) -> int:
        """Forget the unfinished frame; how many bytes it had."""
        dropped, self._carry = len(self._carry), b""
        return dropped
