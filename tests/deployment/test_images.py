"""Each image's build stage, replayed without Docker: its virtual environment holds its own
service and not the others (small images), and the whisper images carry their models."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from deployment.dockerfile_replay import Sandbox, build, parse

SERVICES = {
    "capture": "capture",
    "whisper-worker": "whisper_worker",
    "aggregator": "aggregator",
    "voxtral-worker": "voxtral_worker",
    "fasterwhisper-worker": "fasterwhisper_worker",
}
HEAVY = {
    "pywhispercpp": {"whisper-worker"},
    "ctranslate2": {"fasterwhisper-worker"},
    "av": {"capture", "fasterwhisper-worker"},  # faster-whisper requires PyAV itself
    "sqlalchemy": {"aggregator"},
}
"""Large dependencies and the images that need each."""

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Sandbox]]:
    """Builds a service's stage once per module; the copies (~200 MB each) go afterwards."""
    built: dict[str, Sandbox] = {}

    def get(service: str) -> Sandbox:
        if service not in built:
            built[service] = build(f"{service}-build", tmp_path_factory.mktemp(service))
        return built[service]

    yield get
    for sandbox in built.values():
        shutil.rmtree(sandbox.root, ignore_errors=True)


def importable(python: Path, module: str) -> bool:
    probe = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
    return subprocess.run([str(python), "-c", probe], check=False).returncode == 0


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_an_image_holds_its_own_service_and_no_other(
    service: str, image: Callable[[str], Sandbox]
) -> None:
    python = image(service).root / "app" / ".venv" / "bin" / "python"
    entry = subprocess.run(
        [str(python), "-c", f"import {SERVICES[service]}.__main__"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert entry.returncode == 0, entry.stderr
    for other, package in SERVICES.items():
        assert importable(python, package) == (other == service), package
    for module, owners in HEAVY.items():
        if service not in owners:
            assert not importable(python, module), f"{service} image carries {module}"
    assert not importable(python, "pytest"), "dev dependencies in an image"


def test_the_whisper_image_carries_the_model_its_settings_point_to(
    image: Callable[[str], Sandbox],
) -> None:
    sandbox = image("whisper-worker")
    runtime = parse()["whisper-worker"]
    model_env = next(rest for keyword, rest in runtime.instructions if keyword == "ENV")
    sandbox.apply("ENV", model_env)
    model = Path(sandbox.env["ECHOSTREAM_WHISPER_MODEL_PATH"])
    assert model.is_relative_to(sandbox.root / "models")
    assert model.stat().st_size > 50_000_000
    assert Path(f"{model}.sha256").is_file()


def test_the_fasterwhisper_image_carries_its_ctranslate2_model(
    image: Callable[[str], Sandbox],
) -> None:
    python = image("fasterwhisper-worker").root / "app" / ".venv" / "bin" / "python"
    probe = (
        "from fasterwhisper_worker.model_dir import validate_model_dir; "
        "print(validate_model_dir(None).model_bytes)"
    )
    found = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=False)
    assert found.returncode == 0, found.stderr
    assert int(found.stdout) > 30_000_000
