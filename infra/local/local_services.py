"""What `make run` starts: the services as docker-compose.yml defines them, their ports, and the
embedded NATS broker."""

from __future__ import annotations

import json
import secrets
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

BIN = Path(sys.executable).parent
LOOPBACK = "127.0.0.1"
LOCAL_VLLM = "http://127.0.0.1:8001"


@dataclass(frozen=True)
class Program:
    """One supervised process, and the URL that says it is healthy."""

    name: str
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    health_url: str | None = None


@dataclass(frozen=True)
class Broker:
    """The NATS server the services use; an empty token means none."""

    url: str
    token: str


@dataclass(frozen=True)
class Ports:
    """Where the services listen on this machine."""

    capture: int
    aggregator: int
    whisper_metrics: int
    capture_metrics: int
    aggregator_metrics: int
    voxtral_metrics: int
    fasterwhisper_metrics: int


DEFAULT_PORTS = Ports(8000, 8100, 9101, 9102, 9103, 9104, 9105)
DEFAULT_SERVICES = ("whisper-worker", "capture", "aggregator")
OPTIONAL_SERVICES = ("fasterwhisper-worker", "voxtral-worker")
"""Started only when asked for (``--with`` or ``--engines``); Voxtral needs a vLLM server (a GPU)."""
ENGINES = ("whisper", "fasterwhisper", "voxtral")
"""Every engine ``make run`` can start a worker of; its service is ``<engine>-worker``."""


def worker_service(engine: str) -> str:
    """The service that runs ``engine``'s workers."""
    return f"{engine}-worker"


def services(
    nats: Broker, ports: Ports, state: Path, env: Mapping[str, str], engines: str = "whisper"
) -> list[Program]:
    """Every service ``make run`` knows, with the variables docker-compose.yml gives them.

    ``engines`` are those capture sends every source to, unless ECHOSTREAM_CAPTURE_ENGINES says;
    the first is the one EchoPanel clients see, unless ECHOSTREAM_CAPTURE_ECHOPANEL_ENGINE says.
    """
    common = {
        "ECHOSTREAM_NATS_URL": nats.url,
        "ECHOSTREAM_NATS_TOKEN": nats.token,
        "ECHOSTREAM_LOG_LEVEL": env.get("ECHOSTREAM_LOG_LEVEL", "info"),
        "ECHOSTREAM_LOG_FORMAT": env.get("ECHOSTREAM_LOG_FORMAT", "console"),
    }
    database = env.get("ECHOSTREAM_AGGREGATOR_DATABASE_URL") or (
        f"sqlite+aiosqlite:///{state.resolve() / 'aggregator.db'}"
    )
    return [
        _python(
            "whisper-worker",
            "whisper_worker",
            {**common, "ECHOSTREAM_WHISPER_METRICS_PORT": str(ports.whisper_metrics)},
            f"http://127.0.0.1:{ports.whisper_metrics}/health",
        ),
        _python(
            "capture",
            "capture",
            {
                **common,
                "ECHOSTREAM_CAPTURE_HOST": env.get("ECHOSTREAM_CAPTURE_HOST", LOOPBACK),
                "ECHOSTREAM_CAPTURE_PORT": str(ports.capture),
                "ECHOSTREAM_CAPTURE_TOKEN": env.get("ECHOSTREAM_CAPTURE_TOKEN", ""),
                "ECHOSTREAM_CAPTURE_ENGINES": env.get("ECHOSTREAM_CAPTURE_ENGINES", engines),
                # EchoPanel clients see one engine: the first one asked for, unless told
                "ECHOSTREAM_CAPTURE_ECHOPANEL_ENGINE": env.get(
                    "ECHOSTREAM_CAPTURE_ECHOPANEL_ENGINE",
                    env.get("ECHOSTREAM_CAPTURE_ENGINES", engines).split(",")[0].strip(),
                ),
                "ECHOSTREAM_CAPTURE_METRICS_PORT": str(ports.capture_metrics),
                "ECHOSTREAM_CAPTURE_AGGREGATOR_URL": f"http://127.0.0.1:{ports.aggregator}",
                "ECHOSTREAM_CAPTURE_AGGREGATOR_TOKEN": env.get(
                    "ECHOSTREAM_AGGREGATOR_API_TOKEN", ""
                ),
            },
            f"http://127.0.0.1:{ports.capture}/health",
        ),
        _python(
            "aggregator",
            "aggregator",
            {
                **common,
                "ECHOSTREAM_AGGREGATOR_HTTP_HOST": env.get(
                    "ECHOSTREAM_AGGREGATOR_HTTP_HOST", LOOPBACK
                ),
                "ECHOSTREAM_AGGREGATOR_HTTP_PORT": str(ports.aggregator),
                "ECHOSTREAM_AGGREGATOR_API_TOKEN": env.get("ECHOSTREAM_AGGREGATOR_API_TOKEN", ""),
                "ECHOSTREAM_AGGREGATOR_METRICS_PORT": str(ports.aggregator_metrics),
                "ECHOSTREAM_AGGREGATOR_DATABASE_URL": database,
            },
            f"http://127.0.0.1:{ports.aggregator}/health",
        ),
        _python(
            "fasterwhisper-worker",
            "fasterwhisper_worker",
            {**common, "ECHOSTREAM_FASTERWHISPER_METRICS_PORT": str(ports.fasterwhisper_metrics)},
            f"http://127.0.0.1:{ports.fasterwhisper_metrics}/health",
        ),
        _python(
            "voxtral-worker",
            "voxtral_worker",
            {
                **common,
                "ECHOSTREAM_VOXTRAL_VLLM_URL": env.get("ECHOSTREAM_VOXTRAL_VLLM_URL", LOCAL_VLLM),
                "ECHOSTREAM_VOXTRAL_API_KEY": env.get("ECHOSTREAM_VOXTRAL_API_KEY", ""),
                "ECHOSTREAM_VOXTRAL_MAX_STREAMS": env.get("ECHOSTREAM_VOXTRAL_MAX_STREAMS", "4"),
                "ECHOSTREAM_VOXTRAL_METRICS_PORT": str(ports.voxtral_metrics),
            },
            f"http://127.0.0.1:{ports.voxtral_metrics}/health",
        ),
    ]


def scaled(programs: list[Program], name: str, replicas: int) -> list[Program]:
    """``replicas`` copies of the program ``name`` (``name``, ``name-2``, ...), each with its own
    metrics port, like ``docker compose up --scale name=replicas``."""
    scaled_programs: list[Program] = []
    for program in programs:
        if program.name != name or replicas == 1:
            scaled_programs.append(program)
            continue
        variable = next(k for k in program.env if k.endswith("_METRICS_PORT"))
        for index in range(1, replicas + 1):
            port = program.env[variable] if index == 1 else str(free_port())
            scaled_programs.append(
                Program(
                    name if index == 1 else f"{name}-{index}",
                    program.argv,
                    {**program.env, variable: port},
                    f"http://127.0.0.1:{port}/health",
                )
            )
    return scaled_programs


def _python(name: str, module: str, env: dict[str, str], health_url: str) -> Program:
    return Program(name, (str(BIN / "python"), "-m", module), env, health_url)


class PortTaken(Exception):
    """A port ``make run`` must listen on is held by another process."""


def choose_ports(env: Mapping[str, str], *, any_port: bool = False) -> Ports:
    """Each port from its ECHOSTREAM_* variable or the default. One that another process holds is
    an error naming its variable (clients such as EchoPanel only know the default), or, with
    ``any_port`` (tests), replaced by a free one."""
    variables = {
        "capture": "ECHOSTREAM_CAPTURE_PORT",
        "aggregator": "ECHOSTREAM_AGGREGATOR_HTTP_PORT",
        "whisper_metrics": "ECHOSTREAM_WHISPER_METRICS_PORT",
        "capture_metrics": "ECHOSTREAM_CAPTURE_METRICS_PORT",
        "aggregator_metrics": "ECHOSTREAM_AGGREGATOR_METRICS_PORT",
        "voxtral_metrics": "ECHOSTREAM_VOXTRAL_METRICS_PORT",
        "fasterwhisper_metrics": "ECHOSTREAM_FASTERWHISPER_METRICS_PORT",
    }
    chosen: dict[str, int] = {}
    for name, variable in variables.items():
        preferred = int(env.get(variable) or getattr(DEFAULT_PORTS, name))
        if port_is_free(preferred) and preferred not in chosen.values():
            port = preferred
        elif any_port:
            port = free_port()
        else:
            raise PortTaken(
                f"port {preferred} ({variable}) is taken by another process: stop it, or set "
                f"{variable} to a free port"
            )
        while port in chosen.values():
            port = free_port()
        chosen[name] = port
    return Ports(**chosen)


def port_is_free(port: int) -> bool:
    """Whether a server can listen on ``port``. SO_REUSEADDR as the servers set it (asyncio and
    uvicorn do), so a port left in TIME_WAIT by a closed connection counts as free."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


DEFAULT_NATS_PORT = 4222


def embedded_nats(
    preferred_port: int | None, state: Path, token: str, *, any_port: bool = False
) -> tuple[Program, Broker]:
    """nats-server with a token on ``preferred_port`` (default 4222).

    Only ``make run``'s own services connect to it, so when the default port is held (say, by a
    NATS the machine already runs) a free one serves as well; the caller announces it. A port
    asked for with ``--nats-port`` that another process holds is an error (unless ``any_port``).
    """
    wanted = DEFAULT_NATS_PORT if preferred_port is None else preferred_port
    if port_is_free(wanted):
        port = wanted
    elif any_port or preferred_port is None:
        port = free_port()
    else:
        raise PortTaken(
            f"port {wanted} (the embedded NATS, --nats-port) is taken by another process: "
            f"pass RUN_ARGS='--nats-port N' for another port, or "
            f"ECHOSTREAM_NATS_URL=nats://{LOOPBACK}:{wanted} to use that broker"
        )
    store = state / "jetstream"
    store.mkdir(parents=True, exist_ok=True)
    config = private_file(state / "nats.conf")
    config.write_text(f"authorization {{ token: {json.dumps(token)} }}\n")
    argv = (
        *(str(BIN / "nats-server"), "-c", str(config), "-a", LOOPBACK, "-p", str(port)),
        *("-js", "-sd", str(store)),
    )
    return Program("nats", argv), Broker(f"nats://{LOOPBACK}:{port}", token)


def local_token(state: Path) -> str:
    """The embedded broker's token, kept in the state directory for other local tools."""
    path = state / "nats.token"
    if not path.exists():
        private_file(path).write_text(secrets.token_urlsafe(24))
    return path.read_text().strip()


def private_file(path: Path) -> Path:
    """``path``, readable by this user only; the token is a secret even on a laptop."""
    path.touch(mode=0o600)
    path.chmod(0o600)
    return path
