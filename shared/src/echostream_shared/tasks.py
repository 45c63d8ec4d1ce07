"""Stopping asyncio tasks without swallowing a cancellation meant for the caller."""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait until it has ended.

    Its own ``CancelledError`` is the expected end and is swallowed; a cancellation of the task
    that waits, requested while it waits (a shutdown from above), propagates.
    """
    current = asyncio.current_task()
    requested = current.cancelling() if current is not None else 0
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        if current is not None and current.cancelling() > requested:
            raise
