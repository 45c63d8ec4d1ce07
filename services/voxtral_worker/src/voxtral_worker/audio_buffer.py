"""The source audio a generation may have to be given again, from the last cut on."""

from __future__ import annotations


class AudioBuffer:
    """PCM16 samples ``[start, end)`` of one source; gaps in the sample clock become silence."""

    def __init__(self, start: int) -> None:
        self.start = start
        self._pcm = bytearray()

    @property
    def end(self) -> int:
        return self.start + len(self._pcm) // 2

    def add(self, first_sample: int, pcm: bytes) -> None:
        """Add a chunk; what lies before ``end`` (a replay) is dropped."""
        skip = max(0, self.end - first_sample)
        if skip * 2 >= len(pcm):
            return
        gap = first_sample - self.end
        if gap > 0:
            self._pcm += bytes(2 * gap)
        self._pcm += pcm[2 * skip :]

    def read(self, start: int, end: int) -> bytes:
        start = max(start, self.start)
        end = min(end, self.end)
        if end <= start:
            return b""
        return bytes(self._pcm[2 * (start - self.start) : 2 * (end - self.start)])

    def forget_before(self, sample: int) -> None:
        drop = min(max(0, sample - self.start), len(self._pcm) // 2)
        del self._pcm[: 2 * drop]
        self.start += drop
