"""Settings every batch-engine worker has on top of ``WorkerSettings``."""

from __future__ import annotations

from pydantic import Field, model_validator

from echostream_shared.config import WorkerSettings
from echostream_shared.segmented.policy import SegmentPolicy

# the longest clip a final may decode: the longest segment (28 s) and a partial's 0.2 s lead, so
# that the encoder's margins still fit Whisper's 30 s window
MAX_FINAL_CLIP_S = 28.2


class SegmentedWorkerSettings(WorkerSettings):
    """A worker on the segmented streaming policy; subclass it with the engine's ``env_prefix``."""

    partial_interval_s: float = Field(
        default=1.0, gt=0, description="at most one partial per this much new audio"
    )
    max_segment_s: float = Field(
        default=25.0,
        ge=5,
        le=28,
        description="with the final's lead a segment must fit Whisper's 30 s",
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

    final_lead_s: float = Field(
        default=0.2,
        ge=0,
        le=2,
        description="audio a final decodes before its segment's VAD onset (never audio a final "
        "before it decoded): the VAD clips onsets and misses quiet words between segments",
    )
    final_prompt_words: int = Field(
        default=0,
        ge=0,
        le=100,
        description="a final is decoded with this many words of the finals before it as "
        "Whisper's prompt, the text an offline decode conditions on (0: no prompt)",
    )

    @model_validator(mode="after")
    def _segment_fits_whisper_window(self) -> SegmentedWorkerSettings:
        clip_s = self.max_segment_s + self.final_lead_s
        if clip_s > MAX_FINAL_CLIP_S:
            raise ValueError(
                f"max_segment_s + final_lead_s is {clip_s:g} s: a final with its lead must fit "
                f"Whisper's 30 s window (at most {MAX_FINAL_CLIP_S:g} s)"
            )
        return self

    def segment_policy(self) -> SegmentPolicy:
        """The streaming policy: partials stop at half the lag at which the worker degrades."""
        return SegmentPolicy(
            max_segment_s=self.max_segment_s,
            first_partial_s=self.first_partial_s,
            partial_interval_s=self.partial_interval_s,
            partial_cpu_per_audio_s=self.partial_cpu_per_audio_s,
            max_lag_for_partials_s=self.degrade_lag_s / 2,
            commit_after_s=self.commit_after_s,
            final_lead_s=self.final_lead_s,
            final_prompt_words=self.final_prompt_words,
        )
