"""The cluster override's NATS configuration, run for real: three nodes from
infra/nats/nats-cluster.conf (compose host names swapped for local ports) form a JetStream
cluster, EchoStream's topology is created with three replicas, and the bus keeps taking audio
when the node leading the audio stream dies."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nats
import pytest
from nats_server import free_port, nats_server_binary

from echostream_shared import topology
from echostream_shared.topology import TopologyLimits, ensure_topology

REPO = Path(__file__).resolve().parents[2]
CLUSTER_CONF = REPO / "infra" / "nats" / "nats-cluster.conf"
OVERRIDE = REPO / "docker-compose.cluster.yml"
HOSTS = ("nats", "nats-2", "nats-3")
TOKEN = "cluster-test-token"

pytestmark = pytest.mark.slow


@dataclass
class Node:
    name: str
    client_port: int
    route_port: int
    http_port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.client_port}"

    def healthy(self) -> bool:
        """What the override's health check asks; services start once every node says so."""
        url = f"http://127.0.0.1:{self.http_port}{override_health_path()}"
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


def override_health_path() -> str:
    found = re.search(r"http://127\.0\.0\.1:8222(/\S+?)\"", OVERRIDE.read_text())
    assert found, "no health check URL in docker-compose.cluster.yml"
    return found.group(1)


def local_config(nodes: list[Node], node: Node, store: Path) -> str:
    """nats-cluster.conf for one node on this machine: ports for host names, a local store."""
    text = CLUSTER_CONF.read_text()
    for host, other in zip(HOSTS, nodes, strict=True):
        text = text.replace(
            f"nats-route://{host}:6222", f"nats-route://127.0.0.1:{other.route_port}"
        )
    text = text.replace("listen: 0.0.0.0:6222", f"listen: 127.0.0.1:{node.route_port}")
    text = re.sub(r"^port: 4222$", f"port: {node.client_port}", text, flags=re.MULTILINE)
    text = re.sub(r"^http_port: 8222$", f"http_port: {node.http_port}", text, flags=re.MULTILINE)
    text = text.replace("store_dir: /data/jetstream", f"store_dir: {store}")
    assert ":6222" not in text and "/data/" not in text, "the test no longer matches the file"
    return text


@contextlib.contextmanager
def cluster(workdir: Path) -> Iterator[list[Node]]:
    names = ("nats-1", "nats-2", "nats-3")
    nodes = [Node(name, free_port(), free_port(), free_port()) for name in names]
    try:
        for node in nodes:
            config = workdir / f"{node.name}.conf"
            config.write_text(local_config(nodes, node, workdir / node.name))
            node.process = subprocess.Popen(
                [nats_server_binary(), "-c", str(config)],
                env={**os.environ, "NATS_SERVER_NAME": node.name, "NATS_TOKEN": TOKEN},
                stdout=subprocess.DEVNULL,
                stderr=(workdir / f"{node.name}.log").open("wb"),
            )
        deadline = time.monotonic() + 30
        while not all(node.healthy() for node in nodes):
            assert time.monotonic() < deadline, "the cluster did not become healthy in 30 s"
            time.sleep(0.2)
        yield nodes
    finally:
        for node in nodes:
            node.stop()


async def test_a_three_node_cluster_keeps_replicated_streams_writable_when_a_node_dies(
    tmp_path: Path,
) -> None:
    with cluster(tmp_path) as nodes:
        nc = await nats.connect(
            servers=[node.url for node in nodes], token=TOKEN, reconnect_time_wait=0.2
        )
        try:
            js = nc.jetstream()
            await ensure_topology(js, TopologyLimits(replicas=3))
            for stream in (topology.AUDIO_STREAM, topology.TRANSCRIPT_STREAM, topology.JOB_STREAM):
                info = await js.stream_info(stream)
                assert info.config.num_replicas == 3, stream
                assert info.cluster is not None and len(info.cluster.replicas or []) == 2, stream

            subject = f"{topology.PREFIX}.audio.s1.mic"
            await js.publish(subject, b"before")
            placed = (await js.stream_info(topology.AUDIO_STREAM)).cluster
            assert placed is not None
            leader = placed.leader
            next(node for node in nodes if node.name == leader).stop()

            async with asyncio.timeout(20):
                while True:
                    try:
                        await js.publish(subject, b"after", timeout=1)
                        break
                    except (nats.errors.TimeoutError, nats.js.errors.Error):
                        await asyncio.sleep(0.2)  # a new leader is being elected
            info = await js.stream_info(topology.AUDIO_STREAM)
            assert info.state.messages == 2
            assert info.cluster is not None and info.cluster.leader != leader
        finally:
            await nc.close()


def test_the_cluster_config_is_the_one_the_override_mounts() -> None:
    override = OVERRIDE.read_text()
    assert "./infra/nats/nats-cluster.conf:/etc/nats/nats-cluster.conf:ro" in override
    assert '"/etc/nats/nats-cluster.conf"' in override
    for host in HOSTS:
        assert f"nats-route://{host}:6222" in CLUSTER_CONF.read_text()
