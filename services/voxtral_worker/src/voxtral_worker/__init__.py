"""Voxtral Realtime worker: streams each source's audio to vLLM's ``/v1/realtime``."""
