"""The compat tests' pipeline is `make run`'s: the same default services, commands and variables."""

from __future__ import annotations

from pathlib import Path

from pipeline_procs import local_services, make_run_programs


def test_the_test_pipeline_runs_make_runs_default_services(tmp_path: Path) -> None:
    services = local_services()
    programs, ports = make_run_programs("nats://127.0.0.1:4999", tmp_path, {})
    assert [p.name for p in programs] == list(services.DEFAULT_SERVICES)
    modules = {p.name: p.argv[1:] for p in programs}
    assert modules == {
        "whisper-worker": ("-m", "whisper_worker"),
        "capture": ("-m", "capture"),
        "aggregator": ("-m", "aggregator"),
    }
    env = {p.name: p.env for p in programs}
    assert env["capture"]["ECHOSTREAM_CAPTURE_PORT"] == str(ports.capture)
    assert env["capture"]["ECHOSTREAM_CAPTURE_AGGREGATOR_URL"].endswith(f":{ports.aggregator}")
    assert env["aggregator"]["ECHOSTREAM_AGGREGATOR_HTTP_PORT"] == str(ports.aggregator)
    assert str(tmp_path.resolve()) in env["aggregator"]["ECHOSTREAM_AGGREGATOR_DATABASE_URL"]
    assert all(e["ECHOSTREAM_NATS_URL"] == "nats://127.0.0.1:4999" for e in env.values())
    used = list(vars(ports).values())
    assert len(set(used)) == len(used), "every port its own"
