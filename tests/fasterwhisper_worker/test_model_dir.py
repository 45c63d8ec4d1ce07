"""The model directory is checked before CTranslate2 sees it; nothing is ever downloaded."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from worker_process import require_ct2_model

from fasterwhisper_worker.model_dir import ModelDirError, validate_model_dir
from fasterwhisper_worker.transcriber import FasterWhisperConfig, load_model


@pytest.fixture
def model_copy(tmp_path: Path) -> Path:
    """A writable copy of the packaged tiny.en directory (hard links where possible)."""
    source = require_ct2_model()
    copy = tmp_path / "tiny.en"
    copy.mkdir()
    for file in source.iterdir():
        shutil.copyfile(file, copy / file.name)
    return copy


def test_the_packaged_directory_is_valid() -> None:
    model = validate_model_dir(None)
    assert model.path == require_ct2_model()
    assert model.model_bytes > 10_000_000


def test_a_missing_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelDirError, match="does not exist"):
        validate_model_dir(tmp_path / "nowhere")


def test_a_hub_name_is_not_a_directory() -> None:
    with pytest.raises(ModelDirError, match="tiny.en does not exist"):
        validate_model_dir(Path("tiny.en"))


def test_a_directory_without_weights_is_refused(model_copy: Path) -> None:
    (model_copy / "model.bin").unlink()
    with pytest.raises(ModelDirError, match="no model.bin"):
        validate_model_dir(model_copy)


def test_truncated_weights_are_refused(model_copy: Path) -> None:
    (model_copy / "model.bin").write_bytes(b"\x00" * 1000)
    with pytest.raises(ModelDirError, match="truncated"):
        validate_model_dir(model_copy)


def test_a_broken_config_is_refused(model_copy: Path) -> None:
    (model_copy / "config.json").write_text("{not json")
    with pytest.raises(ModelDirError, match="unreadable"):
        validate_model_dir(model_copy)
    (model_copy / "config.json").write_text('{"other": 1}')
    with pytest.raises(ModelDirError, match="alignment_heads"):
        validate_model_dir(model_copy)


def test_a_missing_tokenizer_is_refused(model_copy: Path) -> None:
    (model_copy / "tokenizer.json").unlink()
    with pytest.raises(ModelDirError, match="tokenizer.json"):
        validate_model_dir(model_copy)


def test_a_checksum_mismatch_is_refused(model_copy: Path) -> None:
    with pytest.raises(ModelDirError, match="sha256"):
        validate_model_dir(model_copy, "0" * 64)


def test_weights_ctranslate2_cannot_read_fail_at_load_not_at_the_first_audio(
    model_copy: Path,
) -> None:
    (model_copy / "model.bin").write_bytes(np.random.default_rng(0).bytes(2_000_000))
    model = validate_model_dir(model_copy)  # the size and files look right...
    with pytest.raises(ModelDirError, match="cannot load"):
        load_model(FasterWhisperConfig(model=model))  # ...but CTranslate2 refuses them
