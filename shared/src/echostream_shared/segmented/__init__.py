"""The VAD-segmented streaming policy every batch engine shares (whisper.cpp, faster-whisper).

An engine supplies only a ``Transcriber`` (``decoding``): a clip of audio in, words with times and
probabilities out. On it, ``policy.SegmentedStream`` turns one source's audio and speech boundaries
into revisable partials and one final per segment, ``guards`` screens every decode for Whisper's
known failures, ``job_stream`` carries the stream's state through the job machinery's checkpoints,
and ``engine.SegmentedEngine`` is the job machinery's ``Engine`` on a transcriber.
"""
