"""The segmented stream as a job stream: its state in the shared checkpoint store, its finals' resume points."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import msgpack
import numpy as np
import numpy.typing as npt
import pytest

from echostream_shared import messages as m, topology as t
from echostream_shared.bus import Bus
from echostream_shared.jobs.checkpoints import Checkpoint, CheckpointError, CheckpointStore
from echostream_shared.jobs.updates import FinalUpdate, PartialUpdate, ResumePoint, TimedWord
from echostream_shared.segmented.decoding import Decoded, DecodedWord, Purpose
from echostream_shared.segmented.job_stream import (
    SegmentedJobStream,
    resume_point,
    segmenter_state,
)
from echostream_shared.segmented.policy import SegmentedStream, SegmenterState, SegmentPolicy

MID_SPEECH = SegmenterState(
    done=48_000,
    in_speech=True,
    segment_start=52_000,
    events_seen=True,
    tail=(TimedWord(" ask", 40_000, 44_000, 0.91), TimedWord(" not", 44_000, 47_500, 0.88)),
    after_cut=True,
)


@pytest.fixture
async def store(bus: Bus) -> CheckpointStore:
    await t.ensure_topology(bus.js)
    return CheckpointStore(await bus.js.key_value(t.CHECKPOINT_BUCKET), "whisper")


async def test_a_stream_checkpoint_survives_the_store(store: CheckpointStore) -> None:
    saved = Checkpoint(resume_point(MID_SPEECH), replay_from_seq=12, finals=3)
    await store.save("s", "mic", saved)
    loaded = await store.load("s", "mic")
    assert loaded is not None
    assert (loaded.resume.done, loaded.replay_from_seq, loaded.finals) == (48_000, 12, 3)
    assert segmenter_state(loaded.resume) == MID_SPEECH


async def test_a_checkpoint_of_the_old_whisper_layout_is_unreadable_so_the_source_replays(
    bus: Bus, store: CheckpointStore
) -> None:
    old = {
        "stream": {
            "done": 48_000,
            "in_speech": False,
            "segment_start": None,
            "events_seen": True,
            "tail": [],
        },
        "replay_from_seq": 12,
        "finals": 3,
        "closed": False,
    }
    kv = await bus.js.key_value(t.CHECKPOINT_BUCKET)
    await kv.put(t.checkpoint_key("whisper", "s", "mic"), msgpack.packb(old))
    with pytest.raises(CheckpointError, match="unreadable checkpoint"):
        await store.load("s", "mic")


def test_a_foreign_engine_state_is_not_taken_for_a_segmenter_state() -> None:
    with pytest.raises(KeyError):
        segmenter_state(ResumePoint(1280, {"segment_start": None, "revision": 0}))


class BurstReader:
    """Hears each constant-valued burst of samples as the word ``w<value>``, exactly timed."""

    async def transcribe(
        self, audio: npt.NDArray[np.float32], *, purpose: Purpose, prompt: str | None = None
    ) -> Decoded:
        values = np.rint(audio * 32768).astype(np.int64)
        edges = np.flatnonzero(np.diff(np.concatenate([[0], values, [0]])) != 0)
        words = tuple(
            DecodedWord(f"w{values[a]}", a / m.SAMPLE_RATE, b / m.SAMPLE_RATE, 1.0)
            for a, b in zip(edges[:-1], edges[1:], strict=True)
            if values[a] > 0
        )
        seconds = len(audio) / m.SAMPLE_RATE
        text = " ".join(w.text for w in words)
        return Decoded(text, words, "en", 1.0 if words else None, 0.1, 0.1, seconds, 0, purpose)


def bursts(n_words: int) -> npt.NDArray[np.int16]:
    """0.3 s words 1..n separated by 0.1 s gaps, after 0.5 s of silence."""
    word, gap = int(0.3 * m.SAMPLE_RATE), int(0.1 * m.SAMPLE_RATE)
    parts = [np.zeros(5 * gap, dtype=np.int16)]
    for value in range(1, n_words + 1):
        parts += [np.full(word, value, dtype=np.int16), np.zeros(gap, dtype=np.int16)]
    return np.concatenate(parts)


@dataclass
class RecordingSink:
    partials: list[PartialUpdate] = field(default_factory=list)
    finals: list[tuple[FinalUpdate, ResumePoint]] = field(default_factory=list)

    async def partial(self, update: PartialUpdate) -> None:
        self.partials.append(update)

    async def final(self, update: FinalUpdate, resume: ResumePoint) -> None:
        self.finals.append((update, resume))


def chunk_of(pcm: npt.NDArray[np.int16], first_sample: int) -> m.AudioChunk:
    return m.AudioChunk(
        session_id="s",
        source="mic",
        seq=0,
        first_sample=first_sample,
        pcm=pcm.astype("<i2").tobytes(),
        captured_at=time.time() - len(pcm) / m.SAMPLE_RATE,
    )


async def test_only_the_last_final_of_a_batch_moves_the_checkpoint() -> None:
    pcm = bursts(23)  # ~9.7 s of speech, no VAD events: cut by length alone
    config = SegmentPolicy(max_segment_s=4.0, cut_search_s=2.0, cut_margin_s=0.5)
    sink = RecordingSink()
    stream = SegmentedJobStream(SegmentedStream(BurstReader(), config), sink)

    await stream.on_audio(chunk_of(pcm, 0))  # one message, several forced finals
    assert len(sink.finals) >= 2
    *earlier, (last, moved) = sink.finals
    # A crash between two finals of one batch must replay the later ones: earlier finals keep
    # the checkpoint from before the batch.
    assert all(resume.done == 0 for _, resume in earlier)
    assert moved.done == last.segment_end > 0
    assert segmenter_state(moved).done == last.segment_end

    closed = await stream.on_closed(len(pcm))
    assert closed.done == len(pcm) == sink.finals[-1][0].segment_end
    heard = [w.text for final, _ in sink.finals for w in final.words]
    assert heard == [f"w{v}" for v in range(1, 24)]  # nothing lost or repeated at the cuts
    assert stream.busy_s > 0 and stream.failure() is None
