"""A protocol-faithful fake of vLLM's ``/v1/realtime`` (0.33.0), for the Voxtral worker's tests.

It follows ``/work/shared/reference/vllm-realtime-protocol.md``; ``voice`` makes audio whose words
the fake "recognises", so the text it streams depends on the audio only, as a model's would;
``ScriptedListener`` makes it hear a script in real speech instead, one line per voiced stretch.
"""

from fake_vllm.listener import ScriptedListener
from fake_vllm.server import FakeVllm, FakeVllmConfig
from fake_vllm.voice import speak

__all__ = ["FakeVllm", "FakeVllmConfig", "ScriptedListener", "speak"]
