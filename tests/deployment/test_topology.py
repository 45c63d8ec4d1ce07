"""`make run` starts what docker-compose.yml starts, with the same variables, and every variable
either sets is one the service reads (its settings class, not a list kept here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from deployment.deploy_files import (
    CLUSTER_FILE,
    COMPOSE_FILE,
    LOCAL,
    OPERATIONS_DOC,
    compose_config,
    config_reference,
    load_module,
    local_services,
    own_services,
)


def load_run() -> Any:
    """``infra/local/run.py``, the script ``make run`` runs, as a module."""
    return load_module("echostream_local_run", LOCAL / "run.py")


def local_programs() -> dict[str, Any]:
    nats = local_services.Broker("nats://127.0.0.1:4222", "token")
    programs = local_services.services(nats, local_services.DEFAULT_PORTS, Path(".run"), {})
    return {program.name: program for program in programs}


def test_make_run_knows_exactly_the_services_of_the_compose_file() -> None:
    every_profile = own_services(compose_config(profiles=("*",)))
    assert set(local_programs()) == set(every_profile)
    default = own_services(compose_config())
    assert set(local_services.DEFAULT_SERVICES) == set(default)
    assert set(local_services.OPTIONAL_SERVICES) == set(every_profile) - set(default)


def test_make_run_runs_the_module_the_image_runs() -> None:
    for name, program in local_programs().items():
        assert program.argv[1:] == ("-m", config_reference.package_of(name)), name


def test_make_run_and_compose_give_each_service_the_same_variables() -> None:
    compose = own_services(compose_config(profiles=("*",)))
    for name, program in local_programs().items():
        assert set(program.env) == set(compose[name]["environment"]), name


@pytest.mark.parametrize(
    "files", [(COMPOSE_FILE,), (COMPOSE_FILE, CLUSTER_FILE)], ids=["base", "cluster"]
)
def test_every_variable_compose_sets_is_read_by_its_service(files: tuple[Path, ...]) -> None:
    for name, spec in own_services(compose_config(files=files, profiles=("*",))).items():
        unknown = set(spec["environment"]) - config_reference.accepted_names(name)
        assert not unknown, f"{name} does not read {sorted(unknown)}"


def test_every_variable_make_run_sets_is_read_by_its_service() -> None:
    for name, program in local_programs().items():
        unknown = set(program.env) - config_reference.accepted_names(name)
        assert not unknown, f"{name} does not read {sorted(unknown)}"


def test_the_metrics_ports_of_make_run_are_the_ports_compose_uses() -> None:
    compose = own_services(compose_config(profiles=("*",)))
    for name, program in local_programs().items():
        ports = {k: v for k, v in program.env.items() if k.endswith("_METRICS_PORT")}
        assert ports == {k: v for k, v in compose[name]["environment"].items() if k in ports}, name


def test_the_configuration_reference_lists_every_variable_as_the_settings_define_it() -> None:
    expected = config_reference.reference()
    assert config_reference.documented(OPERATIONS_DOC) == expected, (
        "docs/operations.md is out of date: run "
        "`.venv/bin/python infra/config_reference.py --write docs/operations.md`"
    )


def test_a_variable_no_service_reads_would_be_caught() -> None:
    assert "ECHOSTREAM_CAPTURE_PORT" in config_reference.accepted_names("capture")
    assert "ECHOSTREAM_CAPTURE_PROT" not in config_reference.accepted_names("capture")
    assert "ECHOSTREAM_NATS_URL" in config_reference.accepted_names("aggregator")
    assert "ECHOSTREAM_CAPTURE_PORT" not in config_reference.accepted_names("aggregator")


def test_make_run_starts_the_workers_of_the_engines_asked_for_and_sends_them_every_source() -> None:
    run = load_run()
    every = list(local_programs().values())
    args = run.parse_args(["--engines", "whisper,fasterwhisper"])
    engines = run.chosen_engines(args.engines, args.add)
    assert engines == ["whisper", "fasterwhisper"]
    names = {p.name for p in run.selected(every, engines, args.add, args.remove)}
    assert names == {"whisper-worker", "fasterwhisper-worker", "capture", "aggregator"}
    only = run.selected(every, ["fasterwhisper"], [], [])
    assert "whisper-worker" not in [p.name for p in only]
    args = run.parse_args(["--with", "fasterwhisper-worker"])
    assert run.chosen_engines(args.engines, args.add) == ["whisper", "fasterwhisper"]
    with pytest.raises(SystemExit):
        run.parse_args(["--engines", "whisper,nosuch"])
    args = run.parse_args(["--engines", "fasterwhisper", "--scale", "fasterwhisper-worker=2"])
    assert args.scale == [("fasterwhisper-worker", 2)]
    nats = local_services.Broker("nats://127.0.0.1:4222", "token")
    alone = local_services.services(
        nats, local_services.DEFAULT_PORTS, Path(".run"), {}, "fasterwhisper"
    )
    capture = next(p for p in alone if p.name == "capture")
    assert capture.env["ECHOSTREAM_CAPTURE_ENGINES"] == "fasterwhisper"
    assert capture.env["ECHOSTREAM_CAPTURE_ECHOPANEL_ENGINE"] == "fasterwhisper"


def test_make_run_scales_the_whisper_worker_like_compose_scale() -> None:
    programs = list(local_programs().values())
    scaled = local_services.scaled(programs, "whisper-worker", 3)
    workers = [p for p in scaled if p.name.startswith("whisper-worker")]
    assert [p.name for p in workers] == ["whisper-worker", "whisper-worker-2", "whisper-worker-3"]
    ports = {p.env["ECHOSTREAM_WHISPER_METRICS_PORT"] for p in workers}
    assert len(ports) == 3, "each replica needs its own metrics port"
    for worker in workers:
        assert worker.argv == workers[0].argv
        assert worker.health_url == (
            f"http://127.0.0.1:{worker.env['ECHOSTREAM_WHISPER_METRICS_PORT']}/health"
        )
    others = [p.name for p in scaled if not p.name.startswith("whisper-worker")]
    assert others == [p.name for p in programs if p.name != "whisper-worker"]
    assert local_services.scaled(programs, "whisper-worker", 1) == programs
