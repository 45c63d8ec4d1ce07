"""Every environment variable EchoStream reads, taken from the services' settings classes.

    python infra/config_reference.py                          print the reference (Markdown)
    python infra/config_reference.py --write docs/operations.md   refresh it between the markers

The settings classes are the only source: a new field is documented by running this again, and
tests/deployment/test_topology.py fails while docs/operations.md lags behind.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import annotated_types
from pydantic import AliasChoices, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from echostream_shared.config import ServiceSettings

REPO = Path(__file__).resolve().parents[1]
SERVICES = (
    "capture",
    "whisper-worker",
    "fasterwhisper-worker",
    "aggregator",
    "voxtral-worker",
)
EXPLAINED = {
    "ECHOSTREAM_NATS_TOKEN": "token the NATS server requires; unset: none",
    "ECHOSTREAM_NATS_CONNECT_TIMEOUT_S": "a service that cannot reach NATS this long exits",
    "ECHOSTREAM_LOG_LEVEL": "`debug`, `info`, `warning` or `error`",
    "ECHOSTREAM_LOG_FORMAT": "`json` (one object a line) or `console`",
    "ECHOSTREAM_DRAIN_TIMEOUT_S": "longest a service finishes in-flight work after SIGTERM",
    "ECHOSTREAM_AUDIO_RETENTION_S": "how long JetStream keeps audio (and jobs) for replay",
    "ECHOSTREAM_AGGREGATOR_HTTP_HOST": "address the HTTP API binds",
    "ECHOSTREAM_AGGREGATOR_PRIMARY_ENGINE": "engine whose transcript a session shows first",
}
"""Meanings of settings whose field has no description of its own."""
START = "<!-- config-reference:start -->"
END = "<!-- config-reference:end -->"


@dataclass(frozen=True)
class Variable:
    """One environment variable and the setting it fills."""

    name: str
    default: str
    meaning: str


def package_of(service: str) -> str:
    """The Python package of a service: ``whisper-worker`` is ``whisper_worker``."""
    return service.replace("-", "_")


def settings_class(service: str) -> type[ServiceSettings]:
    """The one ``ServiceSettings`` subclass a service's ``config`` module defines."""
    module = importlib.import_module(f"{package_of(service)}.config")
    found = [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, ServiceSettings)
        and value.__module__ == module.__name__
    ]
    if len(found) != 1:
        raise LookupError(f"{module.__name__} defines {len(found)} ServiceSettings subclasses")
    return found[0]


def env_names(settings: type[ServiceSettings], field_name: str) -> list[str]:
    """The environment variables that set one field, as pydantic-settings reads them."""
    field = settings.model_fields[field_name]
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return [choice for choice in alias.choices if isinstance(choice, str)]
    if isinstance(alias, str):
        return [alias]
    prefix = str(settings.model_config.get("env_prefix", ""))
    return [f"{prefix}{field_name}".upper()]


def variables(settings: type[ServiceSettings], *, common: bool | None = None) -> Iterator[Variable]:
    """The variables of a settings class; ``common`` keeps only shared (or only own) names."""
    for field_name, field in settings.model_fields.items():
        if common is not None and (field.validation_alias is not None) != common:
            continue
        for name in env_names(settings, field_name):
            yield Variable(name, _default(field), _meaning(name, field))


def common_variables() -> list[Variable]:
    """Variables every service reads under the same name."""
    return list(variables(ServiceSettings, common=True))


def service_variables(service: str) -> list[Variable]:
    """Variables only this service reads."""
    return list(variables(settings_class(service), common=False))


def accepted_names(service: str) -> set[str]:
    """Every variable a service reads."""
    return {v.name for v in variables(settings_class(service))}


def reference() -> str:
    """The configuration reference as Markdown tables."""
    parts = [_table("Every service", common_variables())]
    for service in SERVICES:
        parts.append(_table(service, service_variables(service)))
    return "\n".join(parts)


def _table(title: str, rows: list[Variable]) -> str:
    lines = [f"#### {title}", "", "| variable | default | meaning |", "| --- | --- | --- |"]
    lines += [f"| `{v.name}` | {v.default} | {v.meaning} |" for v in rows]
    return "\n".join(lines) + "\n"


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        return "computed"
    value = field.default
    if value is None or value is PydanticUndefined:
        return "unset"
    if isinstance(value, SecretStr):
        return "secret"
    if isinstance(value, bool):
        value = str(value).lower()
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, tuple):
        value = ",".join(str(part) for part in value)
    if isinstance(value, Path):
        value = f"<repo>/{value.relative_to(REPO)}" if value.is_relative_to(REPO) else value
    return f"`{value}`"


def _meaning(name: str, field: FieldInfo) -> str:
    limits = []
    for item in field.metadata:
        if isinstance(item, annotated_types.Gt):
            limits.append(f"> {item.gt}")
        elif isinstance(item, annotated_types.Ge):
            limits.append(f"≥ {item.ge}")
        elif isinstance(item, annotated_types.Lt):
            limits.append(f"< {item.lt}")
        elif isinstance(item, annotated_types.Le):
            limits.append(f"≤ {item.le}")
    text = (field.description or EXPLAINED.get(name, "")).replace("|", "\\|")
    if limits:
        text = f"{text} ({', '.join(limits)})" if text else f"({', '.join(limits)})"
    return text


def write(path: Path) -> None:
    """Replace the reference between the markers of ``path``."""
    text = path.read_text(encoding="utf-8")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{START}\n{reference()}{END}{tail}", encoding="utf-8")


def documented(path: Path) -> str:
    """The reference as it stands between the markers of ``path``."""
    text = path.read_text(encoding="utf-8")
    return text.split(START, 1)[1].split(END, 1)[0].strip("\n") + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--write", type=Path, metavar="FILE", help="update FILE in place")
    args = parser.parse_args(argv)
    if args.write:
        write(args.write)
    else:
        sys.stdout.write(reference())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
