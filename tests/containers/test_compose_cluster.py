"""docker-compose.cluster.yml for real: three NATS nodes with every stream on three replicas; a
session survives SIGKILL of the node that leads the audio stream, complete and every final once."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import nats
import pytest
from capture_audio import Speech, conversation
from containers.compose_project import ComposeProject, base_images, cluster_files, docker_unusable
from deployment.deploy_files import SECRETS
from fault_checks import assert_whole, figure, native_session, stored_session, text_of
from speech_corpus import wer

from echostream_shared import topology

REASON = docker_unusable()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(REASON is not None, reason=f"compose tests need Docker: {REASON}"),
    pytest.mark.timeout(900),
]
NODES = {"nats-1": "nats", "nats-2": "nats-2", "nats-3": "nats-3"}
"""NATS server name -> compose service."""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeProject]:
    project = ComposeProject(
        f"echostream-cluster-{uuid.uuid4().hex[:6]}",
        tmp_path_factory.mktemp("cluster"),
        cluster_files(),
        base_images(),
    )
    project.compose("build", timeout=3600)
    try:
        figure("cluster up --wait s", round(project.up(), 1))
        yield project
    finally:
        project.down("--volumes")


async def audio_leader(project: ComposeProject) -> str:
    client = await nats.connect(
        f"nats://127.0.0.1:{project.ports['NATS']}", token=SECRETS["ECHOSTREAM_NATS_TOKEN"]
    )
    try:
        info = await client.jetstream().stream_info(topology.AUDIO_STREAM)
    finally:
        await client.close()
    assert info.cluster is not None and info.cluster.leader in NODES, info.cluster
    assert len(info.cluster.replicas or []) == 2, info.cluster  # three copies in all
    return info.cluster.leader


async def test_a_session_survives_killing_the_audio_stream_leader(cluster: ComposeProject) -> None:
    talk: Speech = conversation(gap_s=1.0, names=("quick_brown_fox", "hello_world") * 3)
    killed: list[str] = []

    async def kill_leader(_: str) -> None:
        await asyncio.sleep(3)
        leader = await audio_leader(cluster)
        container = cluster.container(NODES[leader])
        await asyncio.to_thread(cluster.kill, container)
        killed.append(container)

    started = time.monotonic()
    token = SECRETS["ECHOSTREAM_CAPTURE_TOKEN"]
    session_id = await native_session(cluster.capture_ws, talk, token=token, during=kill_leader)
    headers = {"Authorization": f"Bearer {SECRETS['ECHOSTREAM_AGGREGATOR_API_TOKEN']}"}
    session = await stored_session(cluster.api, session_id, headers=headers)
    assert_whole(session)
    error = wer(talk.text, text_of(session))
    figure(
        "cluster: SIGKILL the audio stream's leader",
        f"complete in {time.monotonic() - started:.1f} s, WER {error:.3f}",
    )
    assert error <= 0.2, text_of(session)
    cluster.start(killed[0])
    cluster.wait_healthy(killed[0])
