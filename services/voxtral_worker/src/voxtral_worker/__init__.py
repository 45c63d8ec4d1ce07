"""Voxtral Realtime worker: streams each source's audio to vLLM's ``/v1/realtime``."""

import echostream_shared  # noqa: F401  (one BLAS thread: set before numpy loads)
