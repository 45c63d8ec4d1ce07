"""Settings every batch-engine worker has on top of ``WorkerSettings``."""

from __future__ import annotations

from pydantic import Field

from echostream_shared.config import WorkerSettings
from echostream_shared.segmented.policy import SegmentPolicy


class SegmentedWorkerSettings(WorkerSettings):
    """A worker on the segmented streaming policy; subclass it with the engine's ``env_prefix``."""

    partial_interval_s: float = Field(
        default=1.0, gt=0, description="at most one partial per this much new audio"
    )
    max_segment_s: float = Field(
        default=25.0, ge=5, le=28, description="with its pads a segment must fit Whisper's 30 s"
    )
    first_partial_s: float = Field(
        default=0.6,
        ge=0.3,
        le=3,
        description="segment audio (with the VAD's pre-roll) before a segment's first partial try",
    )
    partial_cpu_per_audio_s: float = Field(
        default=0.06,
        ge=0,
        le=2,
        description="CPU-s partials may spend per second of audio (a segment's first try always "
        "goes); about half the engine's offline cost",
    )
    commit_after_s: float | None = Field(
        default=None,
        ge=0.3,
        le=5,
        description="publish a segment's words as a final before the segment ends once two "
        "partials agree on them and they were spoken this long before the newer partial's end "
        "(unset: words wait for their segment's final)",
    )

    final_prompt_words: int = Field(
        default=0,
        ge=0,
        le=100,
        description="a final is decoded with this many words of the finals before it as "
        "Whisper's prompt, the text an offline decode conditions on (0: no prompt)",
    )

    def segment_policy(self) -> SegmentPolicy:
        """The streaming policy: partials stop at half the lag at which the worker degrades."""
        return SegmentPolicy(
            max_segment_s=self.max_segment_s,
            first_partial_s=self.first_partial_s,
            partial_interval_s=self.partial_interval_s,
            partial_cpu_per_audio_s=self.partial_cpu_per_audio_s,
            max_lag_for_partials_s=self.degrade_lag_s / 2,
            commit_after_s=self.commit_after_s,
            final_prompt_words=self.final_prompt_words,
        )
