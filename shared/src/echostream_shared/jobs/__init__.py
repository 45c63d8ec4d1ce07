"""Engine-independent machinery of a transcription worker.

A worker pulls (session, source, engine) jobs while its measured load leaves room for one more
(``worker``, which creates its engine's work-queue consumer; ``admission`` decides from ``load``:
lag, and process CPU against the usable cores), replays each source's audio from its
checkpoint (``source_job``, ``checkpoints``) into an engine stream, and publishes what the stream
reports with deterministic ids (``publisher``). An engine supplies only the stream (``EngineStream``) that
turns audio and speech boundaries into ``updates``: a batch engine gets it from
``echostream_shared.segmented``, a natively streaming one (Voxtral) writes its own.
"""
