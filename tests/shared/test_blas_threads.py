"""Each service process runs numpy's matrix products on its own thread: OpenBLAS's helper threads
spin between the small products of the mel spectrogram and the VAD (at 8 faster-whisper streams one
of them took more CPU than both decoders)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# a product big enough for OpenBLAS to split it over its threads, then the threads the process has
PROBE = """
import {package}
import os
import numpy as np
a = np.ones((512, 512))
for _ in range(3):
    a @ a
print(len(os.listdir("/proc/self/task")))
"""


def threads_after_matmul(package: str, env: dict[str, str] | None = None) -> int:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(package=package)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=120,
    )
    return int(done.stdout.split()[-1])


@pytest.mark.parametrize(
    "package",
    ["capture", "aggregator", "whisper_worker", "fasterwhisper_worker", "voxtral_worker"],
)
def test_a_service_process_multiplies_matrices_on_one_thread(package: str) -> None:
    assert threads_after_matmul(package, env={"PATH": "/usr/bin:/bin"}) == 1


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="OpenBLAS starts no helper on one core")
def test_the_probe_sees_openblas_threads_when_nothing_limits_them() -> None:
    # without a service package first, OpenBLAS starts a thread per core
    assert threads_after_matmul("sys", env={"PATH": "/usr/bin:/bin"}) > 1
