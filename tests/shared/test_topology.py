from __future__ import annotations

import pytest
from nats.aio.client import Client as NATS
from nats.js.errors import NoStreamResponseError

from echostream_shared import topology as t


async def test_creating_the_topology_twice_is_a_no_op(nats_client: NATS) -> None:
    js = nats_client.jetstream()
    await t.ensure_topology(js)
    first = {name: await js.stream_info(name) for name in _stream_names()}
    await t.ensure_worker_consumer(js, "whisper")
    consumers = {"whisper": await js.consumer_info(t.JOB_STREAM, t.worker_consumer("whisper"))}

    await t.ensure_topology(js)
    await t.ensure_worker_consumer(js, "whisper")

    for name, info in first.items():
        again = await js.stream_info(name)
        assert again.config == info.config
        assert again.created == info.created
    for engine, info in consumers.items():
        again_consumer = await js.consumer_info(t.JOB_STREAM, t.worker_consumer(engine))
        assert again_consumer.config == info.config
        assert again_consumer.created == info.created
    assert (await (await js.key_value(t.CHECKPOINT_BUCKET)).status()).bucket == t.CHECKPOINT_BUCKET


async def test_the_streams_have_the_documented_policies(nats_client: NATS) -> None:
    js = nats_client.jetstream()
    limits = t.TopologyLimits()
    await t.ensure_topology(js, limits)
    await t.ensure_worker_consumer(js, "whisper", limits)
    audio = (await js.stream_info(t.AUDIO_STREAM)).config
    jobs = (await js.stream_info(t.JOB_STREAM)).config
    assert audio.subjects == ["ep.audio.>"]
    assert audio.max_age == limits.audio_max_age_s
    assert audio.max_bytes == limits.audio_max_bytes
    assert audio.max_msg_size == limits.max_msg_size
    assert jobs.retention == t.RetentionPolicy.WORK_QUEUE
    worker = (await js.consumer_info(t.JOB_STREAM, t.worker_consumer("whisper"))).config
    assert worker.ack_wait == limits.job_ack_wait_s
    assert worker.filter_subject == "ep.job.whisper"


async def test_changed_limits_update_the_existing_streams(nats_client: NATS) -> None:
    js = nats_client.jetstream()
    await t.ensure_topology(js)
    await t.ensure_topology(js, t.TopologyLimits(audio_max_age_s=3600.0))
    assert (await js.stream_info(t.AUDIO_STREAM)).config.max_age == 3600.0


async def test_every_subject_lands_in_exactly_one_stream(nats_client: NATS) -> None:
    js = nats_client.jetstream()
    await t.ensure_topology(js)
    persisted = [
        t.audio("s1", "mic"),
        t.session_events("s1"),
        t.transcript("whisper", "s1", "mic"),
        t.job("whisper"),
    ]
    for subject in persisted:
        ack = await js.publish(subject, b"x")
        assert ack.stream in _stream_names()
    for live_only in (t.session_feed("s1"), t.worker_status("whisper", "w1")):
        with pytest.raises(NoStreamResponseError):
            await js.publish(live_only, b"x", timeout=1)


def _stream_names() -> list[str]:
    return [t.AUDIO_STREAM, t.SESSION_STREAM, t.TRANSCRIPT_STREAM, t.JOB_STREAM]
