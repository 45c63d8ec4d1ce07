"""What the ingress fuzz tests feed capture: arbitrary JSON values, and real audio files mutated."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from capture_audio import encode, packaged
from hypothesis import strategies as st

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)

MUTATIONS = ("flip", "cut", "insert", "zero")


class Originals(list[bytes]):
    """Real files to mutate (with a short repr, for hypothesis' reports)."""

    def __repr__(self) -> str:
        return f"Originals({len(self)} files)"


def real_files(folder: Path, specs: Iterable[tuple[str, str, int, int]]) -> Originals:
    """A second of speech encoded as each (file name, codec, sample rate, channels)."""
    pcm = packaged("hello_world").pcm[:16000]
    return Originals(
        encode(pcm, folder / name, codec, rate, channels).read_bytes()
        for name, codec, rate, channels in specs
    )


@st.composite
def mutated(draw: st.DrawFn, originals: Originals, kinds: tuple[str, ...] = MUTATIONS) -> bytes:
    """One of ``originals`` with 1-6 edits: a flipped byte, a cut, inserted bytes, 64 zeroed
    bytes, or (with ``"repeat"`` in ``kinds``) a stretch of up to 4 KiB said twice."""
    data = bytearray(originals[draw(st.integers(0, len(originals) - 1))])
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        match draw(st.sampled_from(kinds)):
            case "flip":
                data[at] ^= draw(st.integers(1, 255))
            case "cut":
                del data[at:]
            case "insert":
                data[at:at] = draw(st.binary(min_size=1, max_size=64))
            case "zero":
                data[at : at + 64] = bytes(min(64, len(data) - at))
            case "repeat":
                data[at:at] = data[at : at + draw(st.integers(1, 4096))]
    return bytes(data)
