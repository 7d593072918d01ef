"""The sweep's report hub: one async actor through which trials' Train controllers reach the driver.

The Train controllers post each epoch's report (:mod:`ferray.search._trial`) and their
placement groups (:mod:`ferray.search._reaper`) to it; the trial functions and the reaper
take them. Both sides call it through :func:`hub_call`, which bounds the wait.
"""

from __future__ import annotations

import asyncio
from typing import Any

import ray

from ferray.errors import FerrayError

__all__ = ["ReportHub", "hub_call", "PLACEMENT_GROUPS", "HUB_CALL_TIMEOUT_S"]

#: Hub key under which trials' controllers post their placement groups (for the reaper).
PLACEMENT_GROUPS = "__placement_groups__"
#: Bound on one call to the hub actor; past it the hub is taken for dead.
HUB_CALL_TIMEOUT_S = 120.0


@ray.remote(num_cpus=0)
class ReportHub:
    """One per sweep (an async actor): mailboxes keyed by trial id.

    The Train controllers post reports (``put``); each trial function takes its own
    (``take``, waiting at most ``timeout`` seconds). Items are taken in the order posted.
    """

    def __init__(self) -> None:
        self._items: dict[str, list] = {}
        self._events: dict[str, asyncio.Event] = {}

    async def put(self, key: str, item: Any) -> None:
        self._items.setdefault(key, []).append(item)
        event = self._events.get(key)
        if event is not None:
            event.set()

    async def take(self, key: str, timeout: float = 0.0) -> list:
        if not self._items.get(key) and timeout > 0:
            event = self._events.setdefault(key, asyncio.Event())
            event.clear()
            try:
                await asyncio.wait_for(event.wait(), timeout)
            except asyncio.TimeoutError:
                pass
        return self._items.pop(key, [])


def hub_call(method, *args, timeout: float = HUB_CALL_TIMEOUT_S):
    """Call a hub method and wait at most ``timeout`` seconds for its answer."""
    ref = method.remote(*args)
    try:
        return ray.get(ref, timeout=timeout)
    except ray.exceptions.GetTimeoutError:
        name = getattr(method, "_method_name", "a call")
        raise FerrayError(f"the sweep's report hub did not answer {name}() within {timeout:.0f} s") from None
