"""Deepgram ``/v1/listen``: its query options, client control messages and the server messages made
from EchoStream transcripts (``Results``, ``Metadata``, ``SpeechStarted``, ``UtteranceEnd``,
``Error``), shaped as the official SDK parses them."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError

from capture.audio import AudioFormat, Encoding
from echostream_shared import messages as m

RATE = m.SAMPLE_RATE
DEFAULT_ENDPOINTING_MS = 10
RAW_ENCODINGS: dict[str, Encoding] = {
    "linear16": "pcm_s16le",
    "linear32": "pcm_s32le",
    "mulaw": "mulaw",
    "alaw": "alaw",
}
CONTAINER_ENCODINGS = frozenset({"opus", "ogg-opus", "flac"})
"""Encodings whose frames only decode inside their container; decoded like an encoding-less stream."""
_MODEL_NAMESPACE = uuid.UUID("6f1d3c52-0c8e-4d8e-9b64-2f0f5f0e7d10")


def _flag(value: object) -> object:
    """SDKs up to 7.1 send ``True``, later ones ``true``: booleans are read case-insensitively."""
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "1"):
            return True
        if lowered in ("false", "0"):
            return False
    return value


def _endpointing(value: object) -> object:
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered == "false":
            return False
        if lowered == "true":
            return DEFAULT_ENDPOINTING_MS
    return value


Flag = Annotated[bool, BeforeValidator(_flag), Field(strict=True)]
Endpointing = Annotated[Literal[False] | Annotated[int, Field(ge=0)], BeforeValidator(_endpointing)]


class OptionError(ValueError):
    """Query options that cannot be served; refused before the socket opens (HTTP 400)."""


class ListenOptions(BaseModel):
    """The query parameters of ``/v1/listen`` that EchoStream reads (live and prerecorded); every
    other Deepgram option (``language``, ``diarize``, ``numerals``, ``keyterm``, …) is accepted and
    ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    model: str | None = Field(default=None, max_length=128)
    encoding: str | None = Field(default=None, max_length=32)
    sample_rate: int | None = Field(default=None, ge=1)
    channels: int = Field(default=1, ge=1)
    multichannel: Flag = False
    interim_results: Flag = False
    endpointing: Endpointing = DEFAULT_ENDPOINTING_MS
    utterance_end_ms: int | None = Field(default=None, ge=0)
    vad_events: Flag = False
    punctuate: Flag = False
    smart_format: Flag = False
    utterances: Flag = False
    callback: str | None = None

    @property
    def punctuated(self) -> bool:
        """Deepgram sends cased, punctuated text only when asked for."""
        return self.punctuate or self.smart_format

    def raw_format(self) -> AudioFormat | None:
        """The format of headerless audio, or None when the audio arrives in a container.

        Raises:
            OptionError: an encoding EchoStream cannot decode, or raw audio without ``sample_rate``.
        """
        if self.encoding is None or self.encoding in CONTAINER_ENCODINGS:
            return None
        encoding = RAW_ENCODINGS.get(self.encoding)
        if encoding is None:
            known = ", ".join([*RAW_ENCODINGS, *sorted(CONTAINER_ENCODINGS)])
            raise OptionError(f"unsupported encoding {self.encoding!r}: use one of {known}")
        if self.sample_rate is None:
            raise OptionError(f"encoding {self.encoding} needs sample_rate")
        return AudioFormat(self.sample_rate, self.channels, encoding)

    def engine(self, engines: Sequence[str]) -> str:
        """The engine ``model`` names when it names a configured one, else the default engine."""
        return self.model if self.model is not None and self.model in engines else engines[0]


def listen_options(query: dict[str, str]) -> ListenOptions:
    """The options of a query string, or an ``OptionError`` naming the bad parameter."""
    try:
        return LISTEN_OPTIONS.validate_python(query)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "query"
        raise OptionError(f"invalid query parameter {where}: {first['msg']}") from None


LISTEN_OPTIONS: TypeAdapter[ListenOptions] = TypeAdapter(ListenOptions)


# Client control messages.


class _Control(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class KeepAlive(_Control):
    type: Literal["KeepAlive"]


class Finalize(_Control):
    type: Literal["Finalize"]


class CloseStream(_Control):
    type: Literal["CloseStream"]


class Configure(_Control):
    type: Literal["Configure"]
    keyterms: list[str] | None = None
    features: dict[str, bool] | None = None


ControlMessage = Annotated[
    KeepAlive | Finalize | CloseStream | Configure, Field(discriminator="type")
]
CONTROL_MESSAGE: TypeAdapter[ControlMessage] = TypeAdapter(ControlMessage)
CONTROL_TYPES = frozenset({"KeepAlive", "Finalize", "CloseStream", "Configure"})


# Server messages.


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)

    def json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


class Word(_Out):
    word: str
    start: float
    end: float
    confidence: float
    punctuated_word: str | None = None


class Alternative(_Out):
    transcript: str
    confidence: float
    words: list[Word]


class Channel(_Out):
    alternatives: list[Alternative]


class ModelInfo(_Out):
    name: str
    version: str
    arch: str


class ResultsMetadata(_Out):
    request_id: str
    model_info: ModelInfo
    model_uuid: str


class Results(_Out):
    type: Literal["Results"] = "Results"
    channel_index: tuple[int, int]
    duration: float
    start: float
    is_final: bool
    speech_final: bool
    from_finalize: bool
    channel: Channel
    metadata: ResultsMetadata


class Metadata(_Out):
    type: Literal["Metadata"] = "Metadata"
    transaction_key: str = "deprecated"
    request_id: str
    sha256: str
    created: str
    duration: float
    channels: int
    models: list[str]
    model_info: dict[str, ModelInfo]


class SpeechStarted(_Out):
    type: Literal["SpeechStarted"] = "SpeechStarted"
    channel: tuple[int, int]
    timestamp: float


class UtteranceEnd(_Out):
    type: Literal["UtteranceEnd"] = "UtteranceEnd"
    channel: tuple[int, int]
    last_word_end: float


class Error(_Out):
    """Deepgram's in-stream error; ``variant`` ``SchemaError`` is a text message it cannot parse."""

    type: Literal["Error"] = "Error"
    variant: str
    description: str
    message: str


class ConfigureFailure(_Out):
    type: Literal["ConfigureFailure"] = "ConfigureFailure"
    request_id: str
    code: str
    description: str


class ConfigureSuccess(_Out):
    type: Literal["ConfigureSuccess"] = "ConfigureSuccess"
    request_id: str


# The mapping.


def seconds(sample: int) -> float:
    return round(sample / RATE, 3)


def created_now() -> str:
    """Deepgram's ``created``: ISO 8601 in UTC with milliseconds and a ``Z``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class EngineModel:
    """How an engine presents itself as a Deepgram model: a stable uuid and its name."""

    def __init__(self, engine: str) -> None:
        self.uuid = str(uuid.uuid5(_MODEL_NAMESPACE, f"echostream/{engine}"))
        self.info = ModelInfo(name=engine, version="echostream", arch=engine)

    def results_metadata(self, request_id: str) -> ResultsMetadata:
        return ResultsMetadata(request_id=request_id, model_info=self.info, model_uuid=self.uuid)

    def metadata(
        self, request_id: str, sha256: str, created: str, duration_s: float, channels: int
    ) -> Metadata:
        return Metadata(
            request_id=request_id,
            sha256=sha256,
            created=created,
            duration=round(duration_s, 3),
            channels=channels,
            models=[self.uuid],
            model_info={self.uuid: self.info},
        )


_EDGES = re.compile(r"^[\W_]+|[\W_]+$")


def plain_word(text: str) -> str:
    """A word as Deepgram's ``word``: lower case, no surrounding punctuation."""
    return _EDGES.sub("", text.strip()).lower()


def words_of(final: m.TranscriptFinal, punctuated: bool) -> list[Word]:
    """The final's words; punctuation the engine gave as its own token joins the word before."""
    found: list[Word] = []
    for w in final.words:
        plain = plain_word(w.text)
        if not plain:
            if punctuated and found and w.text.strip():
                last = found[-1]
                joined = (last.punctuated_word or last.word) + w.text.strip()
                found[-1] = last.model_copy(update={"punctuated_word": joined})
            continue
        found.append(
            Word(
                word=plain,
                start=seconds(w.start_sample),
                end=seconds(max(w.end_sample, w.start_sample)),
                confidence=round(w.probability if w.probability is not None else 0.0, 4),
                punctuated_word=w.text.strip() if punctuated else None,
            )
        )
    return found


def transcript_of(text: str, words: list[Word], punctuated: bool) -> str:
    if punctuated:
        return text.strip()
    if words:
        return " ".join(w.word for w in words)
    return " ".join(p for p in (plain_word(t) for t in text.split()) if p)


def confidence_of(final: m.TranscriptFinal, words: list[Word]) -> float:
    if final.confidence is not None:
        return round(final.confidence, 4)
    if words:
        return round(sum(w.confidence for w in words) / len(words), 4)
    return 0.0


def final_alternative(final: m.TranscriptFinal, punctuated: bool) -> Alternative:
    words = words_of(final, punctuated)
    return Alternative(
        transcript=transcript_of(final.text, words, punctuated),
        confidence=confidence_of(final, words),
        words=words,
    )


def partial_alternative(partial: m.TranscriptPartial, punctuated: bool) -> Alternative:
    """An interim hypothesis: partials carry no word times, so ``words`` is empty."""
    return Alternative(
        transcript=transcript_of(partial.text, [], punctuated), confidence=0.0, words=[]
    )


def results(
    *,
    channel: tuple[int, int],
    start_sample: int,
    end_sample: int,
    alternative: Alternative,
    is_final: bool,
    speech_final: bool,
    from_finalize: bool,
    metadata: ResultsMetadata,
) -> Results:
    return Results(
        channel_index=channel,
        start=seconds(start_sample),
        duration=seconds(max(0, end_sample - start_sample)),
        is_final=is_final,
        speech_final=speech_final,
        from_finalize=from_finalize,
        channel=Channel(alternatives=[alternative]),
        metadata=metadata,
    )


EMPTY = Alternative(transcript="", confidence=0.0, words=[])
