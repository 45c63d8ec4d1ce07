"""Each service process runs numpy's matrix products on its own thread and lets OpenMP threads wait
passively: thread pools that spin while they wait starve a shared core (OpenBLAS's helper, between
the small products of the mel spectrogram and the VAD, took more CPU at 8 faster-whisper streams
than both decoders)."""

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
print(os.environ.get("OMP_WAIT_POLICY"), len(os.listdir("/proc/self/task")))
"""


def after_matmul(package: str, env: dict[str, str] | None = None) -> tuple[str, int]:
    """The process's OpenMP wait policy and how many threads it has after the products."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(package=package)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=120,
    )
    policy, threads = done.stdout.split()
    return policy, int(threads)


@pytest.mark.parametrize(
    "package",
    ["capture", "aggregator", "whisper_worker", "fasterwhisper_worker", "voxtral_worker"],
)
def test_a_service_process_multiplies_on_one_thread_and_waits_passively(package: str) -> None:
    assert after_matmul(package, env={"PATH": "/usr/bin:/bin"}) == ("PASSIVE", 1)


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="OpenBLAS starts no helper on one core")
def test_the_probe_sees_openblas_threads_when_nothing_limits_them() -> None:
    # without a service package first, OpenBLAS starts a thread per core
    assert after_matmul("sys", env={"PATH": "/usr/bin:/bin"})[1] > 1
