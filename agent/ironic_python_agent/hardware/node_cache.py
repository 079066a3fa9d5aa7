# SPDX-License-Identifier: Apache-2.0
"""The node this agent serves, kept in one place, and the client that can refresh it.

The agent stores the node Ironic sent with the lookup here (``Agent.node``
reads it back); steps and hardware managers read it with
``hardware.get_cached_node()``. Nothing here dispatches to managers: waiting
for a new node's disks is :func:`ironic_python_agent.hardware.cache_node`'s job.

Ironic sends the whole node with every step, and a node can be big (a
configdrive in ``instance_info``, blobs in ``extra``). A node whose JSON is over
:data:`PACK_ABOVE` is kept zlib-compressed and decoded on each read, so the
cache costs little RAM on a small machine however large the node Ironic holds.
"""

from __future__ import annotations

import json
import threading
import zlib
from typing import Any

PACK_ABOVE = 1 << 20

_lock = threading.Lock()
_state: dict[str, Any] = {"node": None, "packed": None, "uuid": None,
                          "client": None, "timeout": None, "interval": None}


def get() -> dict[str, Any] | None:
    with _lock:
        node, packed = _state["node"], _state["packed"]
    if packed is not None:
        return json.loads(zlib.decompress(packed))  # type: ignore[no-any-return]
    return node  # type: ignore[no-any-return]


def uuid() -> str | None:
    """The stored node's UUID, without decoding a packed node."""
    return _state["uuid"]  # type: ignore[no-any-return]


def put(node: dict[str, Any] | None) -> bool:
    """Store *node*; True when it is another node than the one stored before."""
    if node is None:
        with _lock:
            _state.update(node=None, packed=None, uuid=None)
        return False
    packed = _pack(node)
    with _lock:
        had_node = _state["node"] is not None or _state["packed"] is not None
        previous = _state["uuid"]
        _state.update(node=None if packed is not None else node, packed=packed,
                      uuid=node.get("uuid"))
    return not had_node or previous != node.get("uuid")


def _pack(node: dict[str, Any]) -> bytes | None:
    """The compressed JSON of a node too big to keep as objects, else None."""
    try:
        text = json.dumps(node, separators=(",", ":"))
    except (TypeError, ValueError):  # not from the wire (an in-process caller): keep it
        return None
    if len(text) <= PACK_ABOVE:
        return None
    return zlib.compress(text.encode(), 1)


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
        _state.update(node=None, packed=None, uuid=None, client=None, timeout=None,
                      interval=None)
