"""Validation of a whisper.cpp ggml model file before pywhispercpp is allowed to load it.

whisper.cpp does not fail cleanly on a bad model: a truncated or garbage file loads "successfully"
and then segfaults on the first transcribe, and a string that is not an existing path is taken for
a model name and downloaded from the hub. So the worker checks the file here first: it must be an
existing regular file whose header is sane and whose tensor table accounts for every byte, and
(when a checksum is known) whose sha256 matches.

Layout of a whisper ggml file (all little-endian):
    u32 magic, 11 x i32 hparams,
    i32 n_mel, i32 n_fft, n_mel*n_fft f32 mel filters,
    i32 n_tokens, n_tokens x (u32 len, bytes),
    tensors until EOF: i32 n_dims, i32 name_len, i32 ttype, i32 ne[n_dims], name, raw data.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
from dataclasses import dataclass, fields
from pathlib import Path
from typing import BinaryIO, Final

import numpy as np

GGML_MAGIC: Final = 0x67676D6C
# The header ftype of quantized files is qnt_version * 1000 + ftype (whisper.cpp/ggml convention).
QNT_VERSION_FACTOR: Final = 1000
GGML_QNT_VERSION: Final = 2

# Header ftype (ggml_ftype) -> short name.  0 (all f32) is deliberately absent: whisper.cpp 1.8.5
# aborts on it at the first transcribe (ggml_conv_1d forces an f16 im2col; ggml-org/whisper.cpp#2557).
FTYPE_NAMES: Final[dict[int, str]] = {
    1: "f16",
    2: "q4_0",
    3: "q4_1",
    7: "q8_0",
    8: "q5_0",
    9: "q5_1",
    10: "q2_k",
    11: "q3_k",
    12: "q4_k",
    13: "q5_k",
    14: "q6_k",
}

GGML_TYPE_F32: Final = 0
GGML_TYPE_F16: Final = 1
GGML_TYPE_Q8_0: Final = 8
# Tensor type (ggml_type) -> (elements per block, bytes per block).
GGML_TYPE_SIZES: Final[dict[int, tuple[int, int]]] = {
    GGML_TYPE_F32: (1, 4),
    GGML_TYPE_F16: (1, 2),
    2: (32, 18),  # q4_0
    3: (32, 20),  # q4_1
    6: (32, 22),  # q5_0
    7: (32, 24),  # q5_1
    GGML_TYPE_Q8_0: (32, 34),
    10: (256, 84),  # q2_K
    11: (256, 110),  # q3_K
    12: (256, 144),  # q4_K
    13: (256, 176),  # q5_K
    14: (256, 210),  # q6_K
}

MIN_MODEL_BYTES: Final = 1 << 20
_MAX_TOKEN_BYTES: Final = 1024
_MAX_NAME_BYTES: Final = 256
_SHA256_RE: Final = re.compile(r"^[0-9a-f]{64}$")


class ModelFileError(Exception):
    """The model file is missing, unreadable, malformed, truncated or fails its checksum."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"whisper model file {str(path)!r}: {problem}")


@dataclass(frozen=True)
class Hparams:
    """The 11 int32 hyper-parameters of a whisper ggml header, in file order."""

    n_vocab: int
    n_audio_ctx: int
    n_audio_state: int
    n_audio_head: int
    n_audio_layer: int
    n_text_ctx: int
    n_text_state: int
    n_text_head: int
    n_text_layer: int
    n_mels: int
    ftype: int

    @property
    def ftype_name(self) -> str:
        return FTYPE_NAMES.get(self.ftype % QNT_VERSION_FACTOR, f"unknown({self.ftype})")

    @property
    def multilingual(self) -> bool:
        # whisper.cpp's own rule: .en models have 51864 tokens, multilingual ones more.
        return self.n_vocab >= 51865

    def pack(self) -> bytes:
        return struct.pack("<11i", *(getattr(self, f.name) for f in fields(self)))


@dataclass(frozen=True)
class TensorEntry:
    name: str
    ttype: int
    ne: tuple[int, ...]  # ggml order: fastest-varying dimension first
    offset: int  # of the raw data
    nbytes: int


@dataclass(frozen=True)
class GgmlLayout:
    hparams: Hparams
    n_mel: int
    n_fft: int
    mel_offset: int
    tokens: tuple[bytes, ...]
    tensors: tuple[TensorEntry, ...]


@dataclass(frozen=True)
class ModelInfo:
    path: Path  # absolute, resolved: safe to hand to pywhispercpp
    size: int
    sha256: str
    hparams: Hparams
    n_tokens: int
    n_tensors: int


class _Reader:
    def __init__(self, path: Path, f: BinaryIO, size: int) -> None:
        self.path, self.f, self.size = path, f, size

    def take(self, n: int, what: str) -> bytes:
        start = self.f.tell()
        if start + n > self.size:
            raise ModelFileError(
                self.path,
                f"truncated: {what} needs {n} bytes at offset {start} but the file is only "
                f"{self.size} bytes",
            )
        return self.f.read(n)

    def ints(self, count: int, what: str) -> tuple[int, ...]:
        return struct.unpack(f"<{count}i", self.take(4 * count, what))


def expected_tensor_shapes(h: Hparams) -> dict[str, tuple[int, ...]]:
    """Every tensor whisper.cpp requires for these hparams, with its ggml shape (ne)."""
    da, dt = h.n_audio_state, h.n_text_state
    shapes: dict[str, tuple[int, ...]] = {
        "encoder.conv1.weight": (3, h.n_mels, da),
        "encoder.conv1.bias": (1, da),
        "encoder.conv2.weight": (3, da, da),
        "encoder.conv2.bias": (1, da),
        "encoder.positional_embedding": (da, h.n_audio_ctx),
        "encoder.ln_post.weight": (da,),
        "encoder.ln_post.bias": (da,),
        "decoder.token_embedding.weight": (dt, h.n_vocab),
        "decoder.positional_embedding": (dt, h.n_text_ctx),
        "decoder.ln.weight": (dt,),
        "decoder.ln.bias": (dt,),
    }
    for i in range(h.n_audio_layer):
        shapes |= _block_shapes(f"encoder.blocks.{i}", da, cross=False)
    for i in range(h.n_text_layer):
        shapes |= _block_shapes(f"decoder.blocks.{i}", dt, cross=True)
    return shapes


def _block_shapes(prefix: str, d: int, *, cross: bool) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {
        f"{prefix}.mlp.0.weight": (d, 4 * d),
        f"{prefix}.mlp.0.bias": (4 * d,),
        f"{prefix}.mlp.2.weight": (4 * d, d),
        f"{prefix}.mlp.2.bias": (d,),
    }
    for ln in ("attn_ln", "mlp_ln", *(("cross_attn_ln",) if cross else ())):
        shapes[f"{prefix}.{ln}.weight"] = (d,)
        shapes[f"{prefix}.{ln}.bias"] = (d,)
    for attn in ("attn", *(("cross_attn",) if cross else ())):
        for proj in ("query", "key", "value", "out"):
            shapes[f"{prefix}.{attn}.{proj}.weight"] = (d, d)
            if proj != "key":  # whisper's key projections have no bias
                shapes[f"{prefix}.{attn}.{proj}.bias"] = (d,)
    return shapes


def read_layout(path: str | os.PathLike[str]) -> GgmlLayout:
    """Parse header, mel filters, vocabulary and the tensor table (data is skipped, not read).

    Raises ModelFileError on any inconsistency, including a file that ends before the data
    its tensor table declares.
    """
    p = Path(path)
    try:
        with p.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            return _parse(_Reader(p, f, size))
    except OSError as e:
        raise ModelFileError(p, f"cannot read: {e.strerror or e}") from e


def _parse(r: _Reader) -> GgmlLayout:
    (magic,) = struct.unpack("<I", r.take(4, "magic"))
    if magic != GGML_MAGIC:
        raise ModelFileError(
            r.path, f"not a whisper ggml file (magic 0x{magic:08x}, expected 0x{GGML_MAGIC:08x})"
        )
    h = Hparams(*r.ints(11, "hparams"))
    _check_hparams(r.path, h)

    n_mel, n_fft = r.ints(2, "mel filter header")
    if n_mel != h.n_mels or not 1 <= n_fft <= 4096:
        raise ModelFileError(
            r.path, f"bad mel filter bank shape {n_mel}x{n_fft} for n_mels={h.n_mels}"
        )
    mel_offset = r.f.tell()
    mel = np.frombuffer(r.take(4 * n_mel * n_fft, "mel filters"), dtype="<f4")
    if not (np.all(np.isfinite(mel)) and np.all(mel >= 0)):
        raise ModelFileError(r.path, "mel filter bank holds negative or non-finite values")

    (n_tokens,) = r.ints(1, "vocabulary size")
    if not 0 < n_tokens <= h.n_vocab:
        raise ModelFileError(r.path, f"vocabulary size {n_tokens} not in 1..n_vocab={h.n_vocab}")
    tokens = []
    for i in range(n_tokens):
        (n,) = struct.unpack("<I", r.take(4, f"length of token {i}"))
        if n > _MAX_TOKEN_BYTES:
            raise ModelFileError(r.path, f"token {i} claims an absurd length of {n} bytes")
        tokens.append(r.take(n, f"token {i}"))

    tensors = _walk_tensors(r)
    _check_tensors(r.path, h, tensors)
    return GgmlLayout(h, n_mel, n_fft, mel_offset, tuple(tokens), tuple(tensors))


def _check_hparams(path: Path, h: Hparams) -> None:
    limits = {
        "n_vocab": 1 << 20,
        "n_audio_ctx": 1 << 16,
        "n_audio_state": 1 << 14,
        "n_audio_head": 256,
        "n_audio_layer": 256,
        "n_text_ctx": 1 << 16,
        "n_text_state": 1 << 14,
        "n_text_head": 256,
        "n_text_layer": 256,
    }
    for name, limit in limits.items():
        value = getattr(h, name)
        if not 0 < value <= limit:
            raise ModelFileError(path, f"implausible header value {name}={value}")
    if h.n_mels not in (80, 128):
        raise ModelFileError(path, f"implausible header value n_mels={h.n_mels}")
    if h.n_audio_state % h.n_audio_head or h.n_text_state % h.n_text_head:
        raise ModelFileError(path, "model width is not a multiple of the head count")
    qntvr, ftype = divmod(h.ftype, QNT_VERSION_FACTOR)
    if ftype == 0:
        raise ModelFileError(
            path, "all-f32 models crash whisper.cpp on CPU (ggml-org/whisper.cpp#2557); use f16"
        )
    if ftype not in FTYPE_NAMES or not 0 <= qntvr <= GGML_QNT_VERSION:
        raise ModelFileError(path, f"unknown header ftype {h.ftype}")


def _walk_tensors(r: _Reader) -> list[TensorEntry]:
    tensors: list[TensorEntry] = []
    while r.f.tell() < r.size:
        where = f"header of tensor #{len(tensors)}"
        n_dims, name_len, ttype = r.ints(3, where)
        if not 1 <= n_dims <= 4 or not 1 <= name_len <= _MAX_NAME_BYTES:
            raise ModelFileError(
                r.path, f"corrupt {where} at offset {r.f.tell() - 12} (n_dims={n_dims})"
            )
        ne = r.ints(n_dims, where)
        try:
            name = r.take(name_len, where).decode("ascii")
        except UnicodeDecodeError:
            raise ModelFileError(r.path, f"corrupt {where}: name is not ASCII") from None
        if ttype not in GGML_TYPE_SIZES or min(ne) < 1:
            raise ModelFileError(r.path, f"tensor {name!r}: bad type {ttype} or shape {ne}")
        block, block_bytes = GGML_TYPE_SIZES[ttype]
        if ne[0] % block:
            raise ModelFileError(r.path, f"tensor {name!r}: row of {ne[0]} not a whole block")
        nbytes = int(np.prod(ne, dtype=np.int64)) // block * block_bytes
        offset = r.f.tell()
        if offset + nbytes > r.size:
            raise ModelFileError(
                r.path,
                f"truncated: tensor {name!r} needs {nbytes} bytes at offset {offset} "
                f"but the file is only {r.size} bytes",
            )
        tensors.append(TensorEntry(name, ttype, ne, offset, nbytes))
        r.f.seek(nbytes, os.SEEK_CUR)
    return tensors


def _check_tensors(path: Path, h: Hparams, tensors: list[TensorEntry]) -> None:
    expected = expected_tensor_shapes(h)
    seen: set[str] = set()
    for t in tensors:
        if t.name not in expected:
            raise ModelFileError(path, f"unexpected tensor {t.name!r}")
        if t.name in seen:
            raise ModelFileError(path, f"duplicate tensor {t.name!r}")
        if t.ne != expected[t.name]:
            raise ModelFileError(
                path, f"tensor {t.name!r} has shape {t.ne}, expected {expected[t.name]}"
            )
        seen.add(t.name)
    if missing := sorted(expected.keys() - seen):
        raise ModelFileError(
            path,
            f"truncated or incomplete: {len(tensors)} of {len(expected)} tensors present "
            f"(first missing: {missing[0]!r})",
        )


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    return p.with_name(p.name + ".sha256")


def write_sidecar(path: str | os.PathLike[str], digest: str) -> Path:
    """Write `<model>.sha256` in `sha256sum` format (so `sha256sum -c` can check it too)."""
    p = Path(path)
    side = sidecar_path(p)
    tmp = side.with_name(side.name + ".tmp")
    tmp.write_text(f"{digest}  {p.name}\n", encoding="ascii")
    tmp.replace(side)
    return side


def read_sidecar(path: str | os.PathLike[str]) -> str | None:
    """The digest recorded in `<model>.sha256`, or None when there is no sidecar."""
    side = sidecar_path(path)
    try:
        text = side.read_text(encoding="ascii", errors="replace")
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ModelFileError(path, f"cannot read checksum file {side}: {e.strerror or e}") from e
    words = text.split()
    digest = words[0].lower() if words else ""
    if not _SHA256_RE.match(digest):
        raise ModelFileError(path, f"checksum file {side} does not start with a sha256 digest")
    return digest


def validate_model_file(
    path: str | os.PathLike[str],
    *,
    expected_sha256: str | None = None,
    require_sha256: bool = False,
    min_size: int = MIN_MODEL_BYTES,
) -> ModelInfo:
    """Check a ggml model file thoroughly and describe it; raise ModelFileError if it is unfit.

    The checksum is compared with `expected_sha256` when given and with the `<model>.sha256`
    sidecar when present; `require_sha256` makes a missing checksum an error.
    """
    p = Path(path)
    if not p.exists():
        hint = " (it is a path, never a model name to download" if len(p.parts) == 1 else " ("
        raise ModelFileError(
            p, f"no such file{hint}; provision one with `python -m whisper_worker.provision`)"
        )
    if not p.is_file():
        raise ModelFileError(p, "not a regular file")
    p = p.resolve()
    size = p.stat().st_size
    if size < min_size:
        raise ModelFileError(p, f"only {size} bytes, a whisper model has at least {min_size}")

    layout = read_layout(p)

    sidecar = read_sidecar(p)
    if require_sha256 and expected_sha256 is None and sidecar is None:
        raise ModelFileError(p, f"no checksum given and no {sidecar_path(p).name} next to it")
    digest = sha256_file(p)
    for source, want in (("expected", expected_sha256), (sidecar_path(p).name, sidecar)):
        if want is not None and want.lower() != digest:
            raise ModelFileError(
                p, f"sha256 mismatch: file has {digest}, {source} says {want.lower()}"
            )
    return ModelInfo(
        path=p,
        size=size,
        sha256=digest,
        hparams=layout.hparams,
        n_tokens=len(layout.tokens),
        n_tensors=len(layout.tensors),
    )
