"""Hypothesis strategies that build every bus message."""

from __future__ import annotations

from hypothesis import strategies as st

from echostream_shared import messages as m

tokens = st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)
seconds = st.floats(min_value=0, max_value=1e10, allow_nan=False, allow_infinity=False)
samples = st.integers(min_value=0, max_value=2**40)
texts = st.text(max_size=300)
pcm = st.binary(max_size=4000).map(lambda b: b[: len(b) // 2 * 2])
probabilities = st.none() | st.floats(min_value=0, max_value=1, allow_nan=False)
engines = st.lists(tokens, min_size=1, max_size=3).map(tuple)

words = st.builds(
    m.Word,
    text=st.text(max_size=30),
    start_sample=samples,
    end_sample=samples,
    probability=probabilities,
)

every_message = st.one_of(
    st.builds(
        m.SessionOpened,
        session_id=tokens,
        client=st.text(max_size=64),
        opened_at=seconds,
        engines=engines,
        metadata=st.dictionaries(st.text(max_size=20), st.text(max_size=40), max_size=5),
    ),
    st.builds(m.SessionClosed, session_id=tokens, closed_at=seconds, reason=st.text(max_size=200)),
    st.builds(m.SourceOpened, session_id=tokens, source=tokens, opened_at=seconds, engines=engines),
    st.builds(
        m.SourceClosed, session_id=tokens, source=tokens, end_sample=samples, closed_at=seconds
    ),
    st.builds(
        m.AudioChunk,
        session_id=tokens,
        source=tokens,
        seq=st.integers(min_value=0, max_value=2**40),
        first_sample=samples,
        pcm=pcm,
        captured_at=seconds,
    ),
    st.builds(
        m.SpeechStarted, session_id=tokens, source=tokens, sample=samples, detected_at=seconds
    ),
    st.builds(m.SpeechEnded, session_id=tokens, source=tokens, sample=samples, detected_at=seconds),
    st.builds(
        m.TranscriptionJob, session_id=tokens, source=tokens, engine=tokens, created_at=seconds
    ),
    st.builds(
        m.TranscriptPartial,
        session_id=tokens,
        source=tokens,
        engine=tokens,
        segment_id=tokens,
        revision=st.integers(min_value=0, max_value=10_000),
        start_sample=samples,
        end_sample=samples,
        text=texts,
        emitted_at=seconds,
    ),
    st.builds(
        m.TranscriptFinal,
        session_id=tokens,
        source=tokens,
        engine=tokens,
        segment_id=tokens,
        start_sample=samples,
        end_sample=samples,
        text=texts,
        words=st.lists(words, max_size=8).map(tuple),
        confidence=probabilities,
        language=st.none() | st.sampled_from(["en", "fr", "de"]),
        emitted_at=seconds,
    ),
    st.builds(
        m.SourceTranscribed,
        session_id=tokens,
        source=tokens,
        engine=tokens,
        end_sample=samples,
        finals=st.integers(min_value=0, max_value=10_000),
        emitted_at=seconds,
    ),
    st.builds(
        m.WorkerStatus,
        worker_id=tokens,
        engine=tokens,
        state=st.sampled_from(["ok", "degraded", "error", "stopping"]),
        active_streams=st.integers(min_value=0, max_value=1000),
        capacity=st.integers(min_value=0, max_value=1000),
        max_lag_s=seconds,
        real_time_factor=seconds,
        detail=st.text(max_size=100),
        reported_at=seconds,
    ),
)
