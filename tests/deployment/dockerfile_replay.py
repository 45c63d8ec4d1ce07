"""Replays the build stages of infra/docker/Dockerfile without a Docker engine: the same COPY,
ENV, WORKDIR, ARG and RUN instructions, in order, inside a sandbox directory that stands in for
the image's root. It proves the uv commands, paths and model provisioning of each image work;
the base image itself (python:3.11-slim) is stood in for by this machine's Python 3.11."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from deployment.deploy_files import DOCKERFILE, REPO

UV = REPO / ".tools" / "bin" / "uv"
STAGE = re.compile(r"^FROM (\S+) AS (\S+)$")
BASE_PYTHON = str(
    Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
)
"""The interpreter this venv was made from: it stands in for the image's python:3.11."""
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc")  # as .dockerignore does


@dataclass
class Stage:
    name: str
    parent: str
    instructions: list[tuple[str, str]] = field(default_factory=list)


def parse(dockerfile: Path = DOCKERFILE) -> dict[str, Stage]:
    text = re.sub(r"\\\n\s*", " ", dockerfile.read_text())
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        found = STAGE.match(line)
        if found:
            current = stages[found.group(2)] = Stage(found.group(2), found.group(1))
            continue
        keyword, _, rest = line.partition(" ")
        if current is not None:
            current.instructions.append((keyword, rest))
    return stages


def chain(stages: dict[str, Stage], target: str) -> list[Stage]:
    """The stages ``target`` is built on, base first."""
    order = [stages[target]]
    while order[-1].parent in stages:
        order.append(stages[order[-1].parent])
    return list(reversed(order))


class Sandbox:
    """An image's file system as a directory: absolute paths in instructions land under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env: dict[str, str] = {}
        self.args: dict[str, str] = {}
        self.workdir = root

    def path(self, text: str) -> str:
        return re.sub(
            r"(?<![\w.])/(app|src|models|data)\b", lambda m: f"{self.root}/{m.group(1)}", text
        )

    def expand(self, text: str) -> str:
        values = {**self.args, **self.env}
        return re.sub(r"\$\{(\w+)\}", lambda m: values.get(m.group(1), m.group(0)), text)

    def apply(self, keyword: str, rest: str) -> None:
        rest = self.expand(rest)
        if keyword == "ARG":
            name, _, default = rest.partition("=")
            self.args.setdefault(name, default)
        elif keyword == "ENV":
            for name, value in re.findall(r"(\w+)=(\S+)", rest):
                self.env[name] = self.path(value)
        elif keyword == "WORKDIR":
            self.workdir = Path(self.path(rest))
            self.workdir.mkdir(parents=True, exist_ok=True)
        elif keyword == "COPY" and not rest.startswith("--from="):
            self.copy(*rest.split())
        elif keyword == "RUN":
            self.run(re.sub(r"--mount=\S+\s*", "", rest))

    def copy(self, *paths: str) -> None:
        *sources, target = paths
        base = self.workdir / target
        for source in sources:
            origin = REPO / source.rstrip("/")
            if origin.is_dir():
                shutil.copytree(origin, base, dirs_exist_ok=True, ignore=IGNORED)
                continue
            into_dir = target.endswith("/") or len(sources) > 1
            destination = base / origin.name if into_dir else base
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, destination)

    def run(self, command: str) -> None:
        env = {
            **os.environ,
            **self.env,
            "PATH": f"{UV.parent}:{os.environ.get('PATH', '')}",
            "UV_PYTHON": BASE_PYTHON,
        }
        env.pop("VIRTUAL_ENV", None)
        result = subprocess.run(
            self.path(command),
            shell=True,
            cwd=self.workdir,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, (
            f"{command}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
        )


def build(target: str, root: Path) -> Sandbox:
    """Run every instruction of ``target``'s stages, base first, in a sandbox at ``root``."""
    sandbox = Sandbox(root)
    for stage in chain(parse(), target):
        for keyword, rest in stage.instructions:
            sandbox.apply(keyword, rest)
    return sandbox
