"""An engine that gives up on a source is reported to the client, not waited for."""

from __future__ import annotations

import asyncio

from capture_audio import packaged
from capture_harness import RunningCapture
from native_client import NativeClient

from echostream_shared.bus import Bus
from echostream_shared.jobs.publisher import TranscriptPublisher


async def test_native_done_says_which_source_failed_and_why(
    capture: RunningCapture, bus: Bus
) -> None:
    speech = packaged("hello_world").pcm.tobytes()
    async with NativeClient(capture.ws) as client:
        ready = await client.start(sources=["mic"])
        await client.stream(0, speech, frame_bytes=3200, frames_per_s=100)
        # The engine's side, as the job machinery reports a job failed for good.
        publisher = TranscriptPublisher(bus, "whisper", ready["session_id"], "mic")
        await publisher.source_transcribed(0, 0, failure="JobFailed: audio rejected")
        started = asyncio.get_running_loop().time()
        done = await client.finish(timeout_s=20)
        waited = asyncio.get_running_loop().time() - started
    mic = done["sources"]["mic"]
    assert not done["complete"] and not mic["complete"]
    assert mic["failure"] == "JobFailed: audio rejected"
    assert waited < capture.settings.finish_timeout_s / 2, "not waited out"
