"""Install WhisperLiveKit into its own virtual environment (``make peer-install``).

The project's uv lock never sees it: whisperlivekit declares torch and torchaudio, which plain
resolution would satisfy with a multi-GB CUDA build. Instead every package is pinned in
``requirements.txt`` and installed with ``--no-deps`` by pip, which takes torch 2.13.0+cpu from
the wheel this machine keeps on disk.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from peer.paths import REQUIREMENTS, WLK_VERSION, peer_venv

# What the server imports at start-up with the faster-whisper backend and LocalAgreement.
IMPORT_CHECK = (
    "import faster_whisper, ctranslate2, onnxruntime, torch, librosa, uvicorn, fastapi; "
    "import whisperlivekit.core, whisperlivekit.local_agreement.online_asr; "
    "from importlib.metadata import version; print(version('whisperlivekit'), torch.__version__)"
)


def install(base_python: str, venv: Path) -> str:
    """Create ``venv`` (when absent), install the pinned set, and return what it imported."""
    if not (venv / "bin" / "python").is_file():
        subprocess.run([base_python, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-deps"]
    subprocess.run([*pip, "-r", str(REQUIREMENTS)], check=True)
    found = subprocess.run(
        [str(venv / "bin" / "python"), "-c", IMPORT_CHECK],
        check=True,
        capture_output=True,
        text=True,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    ).stdout.split()
    if not found or found[0] != WLK_VERSION:
        raise SystemExit(f"expected whisperlivekit {WLK_VERSION} in {venv}, found {found}")
    return " ".join(found)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default="python3", help="interpreter that makes the venv")
    parser.add_argument("--venv", type=Path, default=None, help="default: .peer-venv")
    args = parser.parse_args(argv)
    venv = args.venv or peer_venv()
    versions = install(args.python, venv)
    print(f"WhisperLiveKit ready in {venv} (whisperlivekit, torch: {versions})")
    print("run it: PYTHONPATH=tests .venv/bin/python -m peer --audio <wav> --out <json>")
    return 0


if __name__ == "__main__":
    sys.exit(main())
