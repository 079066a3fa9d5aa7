# SPDX-License-Identifier: Apache-2.0
"""The node this agent serves, kept in one place, and the client that can refresh it.

The agent stores the node Ironic sent with the lookup here (``Agent.node``
reads it back); steps and hardware managers read it with
``hardware.get_cached_node()``. Nothing here dispatches to managers: waiting
for a new node's disks is :func:`ironic_python_agent.hardware.cache_node`'s job.
"""

from __future__ import annotations

import threading
from typing import Any

_lock = threading.Lock()
_state: dict[str, Any] = {"node": None, "client": None, "timeout": None, "interval": None}


def get() -> dict[str, Any] | None:
    return _state["node"]  # type: ignore[no-any-return]


def put(node: dict[str, Any] | None) -> bool:
    """Store *node*; True when it is another node than the one stored before."""
    with _lock:
        previous = _state["node"]
        _state["node"] = node
    if node is None:
        return False
    return previous is None or previous.get("uuid") != node.get("uuid")


def save_client(client: Any, timeout: float | None, interval: float | None) -> None:
    """Keep the first Ironic client (with its lookup timeout and interval) for refreshes."""
    with _lock:
        if client and timeout and interval and _state["client"] is None:
            _state.update(client=client, timeout=timeout, interval=interval)


def client() -> tuple[Any, float | None, float | None]:
    return _state["client"], _state["timeout"], _state["interval"]


def forget() -> None:
    """Drop the node and the client (tests)."""
    with _lock:
        _state.update(node=None, client=None, timeout=None, interval=None)
