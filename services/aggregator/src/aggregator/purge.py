"""Removing a session's messages from JetStream, so no rebuild brings it back."""

from __future__ import annotations

from nats.js import JetStreamContext

from echostream_shared import topology as t


async def purge_session(js: JetStreamContext, session_id: str) -> None:
    """Purge the session's audio, transcripts and lifecycle events from their streams."""
    for stream, subject in (
        (t.AUDIO_STREAM, t.audio_of_session(session_id)),
        (t.TRANSCRIPT_STREAM, t.transcripts_of_session(session_id)),
        (t.SESSION_STREAM, t.session_events(session_id)),
    ):
        await js.purge_stream(stream, subject=subject)
