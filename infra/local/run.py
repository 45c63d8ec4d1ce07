"""`make run`: EchoStream on one machine, no Docker.

Starts an embedded nats-server with JetStream (unless ECHOSTREAM_NATS_URL names one), then every
CPU service as a supervised child process with its log lines prefixed by its name. A child that
exits is restarted after a pause that grows while it keeps failing; Ctrl-C (or SIGTERM) stops
everything, services first. The services and the variables they get mirror docker-compose.yml
(tests/deployment/test_topology.py keeps the two in step).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path

from local_services import (
    DEFAULT_NATS_PORT,
    DEFAULT_SERVICES,
    ENGINES,
    OPTIONAL_SERVICES,
    Broker,
    PortTaken,
    Program,
    choose_ports,
    embedded_nats,
    local_token,
    scaled,
    services,
    worker_service,
)
from local_supervisor import announce_when_healthy, nats_address, say, supervise, wait_for_port


def check_names(names: list[str]) -> None:
    """Refuse, before anything starts, a service ``--with``/``--without`` names that does not exist."""
    known = {*DEFAULT_SERVICES, *OPTIONAL_SERVICES}
    unknown = sorted(set(names) - known)
    if unknown:
        raise SystemExit(
            f"unknown service(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )


def engine_list(value: str) -> list[str]:
    """``--engines``: known engine names, comma-separated, each once."""
    engines = [name.strip() for name in value.split(",") if name.strip()]
    unknown = sorted(set(engines) - set(ENGINES))
    if unknown or not engines:
        raise argparse.ArgumentTypeError(
            f"unknown engine(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(ENGINES)}"
        )
    return list(dict.fromkeys(engines))


def replicas(value: str) -> tuple[str, int]:
    """``--scale SERVICE=N``, as ``docker compose up --scale``."""
    name, _, count = value.partition("=")
    if not count.isdigit() or int(count) < 1:
        raise argparse.ArgumentTypeError(f"expected SERVICE=N with N ≥ 1, got {value!r}")
    return name, int(count)


def chosen_engines(engines: list[str], add: list[str]) -> list[str]:
    """The engines asked for, plus those of engine workers added with ``--with``, in order."""
    wanted = set(engines) | {e for e in ENGINES if worker_service(e) in add}
    return [engine for engine in ENGINES if engine in wanted]


def selected(
    all_programs: list[Program], engines: list[str], add: list[str], remove: list[str]
) -> list[Program]:
    workers = {worker_service(engine) for engine in ENGINES}
    wanted = (set(DEFAULT_SERVICES) - workers) | {worker_service(e) for e in engines}
    wanted = (wanted | set(add)) - set(remove)
    return [p for p in all_programs if p.name in wanted]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--nats-port",
        type=int,
        default=None,
        help="the embedded NATS's port (default 4222, or a free one when 4222 is taken)",
    )
    parser.add_argument(
        "--any-port",
        action="store_true",
        help="take a free port for any that another process holds, instead of stopping (tests)",
    )
    parser.add_argument(
        "--state-dir", type=Path, default=Path(".run"), help="JetStream store and SQLite database"
    )
    parser.add_argument(
        "--engines",
        type=engine_list,
        default=["whisper"],
        metavar="LIST",
        help=f"engines to run a worker of and send every source to, comma-separated "
        f"({', '.join(ENGINES)}; default whisper)",
    )
    parser.add_argument(
        "--whisper-workers",
        type=int,
        default=1,
        metavar="N",
        help="whisper worker processes (like docker compose --scale whisper-worker=N)",
    )
    parser.add_argument(
        "--scale",
        type=replicas,
        action="append",
        default=[],
        metavar="SERVICE=N",
        help="N processes of a worker service, e.g. fasterwhisper-worker=2",
    )
    parser.add_argument(
        "--with",
        dest="add",
        action="append",
        default=[],
        metavar="SERVICE",
        help=f"also start an optional service ({', '.join(OPTIONAL_SERVICES)})",
    )
    parser.add_argument(
        "--without",
        dest="remove",
        action="append",
        default=[],
        metavar="SERVICE",
        help=f"leave out a service ({', '.join(DEFAULT_SERVICES)})",
    )
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    state: Path = args.state_dir
    ports = choose_ports(os.environ, any_port=args.any_port)
    given = os.environ.get("ECHOSTREAM_NATS_URL")
    nats_stop = asyncio.Event()
    embedded = None
    if given:
        nats = Broker(given, os.environ.get("ECHOSTREAM_NATS_TOKEN", ""))
        say("run", f"NATS at {nats.url}")
    else:
        program, nats = embedded_nats(
            args.nats_port, state, args.nats_token or "", any_port=args.any_port
        )
        embedded = asyncio.create_task(supervise(program, nats_stop))
        say("run", f"NATS at {nats.url} (embedded; token in {state / 'nats.token'})")
        if args.nats_port is None and not nats.url.endswith(f":{DEFAULT_NATS_PORT}"):
            say(
                "run",
                f"port {DEFAULT_NATS_PORT} is taken by another process (a NATS already running?): "
                f"the embedded NATS listens on {nats.url} instead; only make run's services use "
                "it (--nats-port N to choose, ECHOSTREAM_NATS_URL to use the other broker)",
            )
    engines = chosen_engines(args.engines, args.add)
    every = services(nats, ports, state, os.environ, ",".join(engines))
    programs = selected(every, engines, args.add, args.remove)
    for name, count in [("whisper-worker", args.whisper_workers), *args.scale]:
        programs = scaled(programs, name, count)
    try:
        await wait_for_port(nats.url)
        announcer = asyncio.create_task(announce_when_healthy(programs, ports, stop))
        await asyncio.gather(*(supervise(program, stop) for program in programs))
        await announcer
    finally:
        nats_stop.set()
        if embedded is not None:
            await embedded
    say("run", "stopped")
    return 0


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.whisper_workers < 1:
        raise SystemExit("--whisper-workers must be at least 1")
    check_names(args.add + args.remove + [name for name, _ in args.scale])
    args.state_dir.mkdir(parents=True, exist_ok=True)
    args.nats_token = None
    if os.environ.get("ECHOSTREAM_NATS_URL"):
        nats_address(os.environ["ECHOSTREAM_NATS_URL"])
    else:
        args.nats_token = os.environ.get("ECHOSTREAM_NATS_TOKEN") or local_token(args.state_dir)
    try:
        return asyncio.run(run(args))
    except PortTaken as exc:
        raise SystemExit(f"make run: {exc}") from None


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
