"""The CPU ledger shares the process CPU time among stages that overlap."""

from __future__ import annotations

import threading
import time

from fasterwhisper_worker.cpu_ledger import CpuLedger


def burn(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        sum(range(1000))


def test_overlapping_stages_are_not_charged_twice() -> None:
    ledger = CpuLedger()
    charged: list[float] = []

    def stage() -> None:
        token = ledger.start()
        burn(0.3)
        charged.append(ledger.stop(token))

    cpu0 = time.process_time()
    threads = [threading.Thread(target=stage) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    spent = time.process_time() - cpu0
    assert len(charged) == 2
    assert sum(charged) <= spent + 1e-3, "the charges add up to the process CPU time, not more"
    assert sum(charged) > 0.8 * spent
    alone = ledger.start()
    burn(0.1)
    assert 0.09 < ledger.stop(alone) < 0.2, "a stage alone is charged all of it"
