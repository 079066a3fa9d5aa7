# SPDX-License-Identifier: Apache-2.0
"""NUMA topology from sysfs, as the ``numa_topology`` inspection key."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ironic_python_agent import errors

NODES = Path("/sys/devices/system/node")
NET = Path("/sys/class/net")

_NODE = re.compile(r"^node(\d+)$")
_CPU = re.compile(r"^cpu(\d+)$")
_MEMTOTAL = re.compile(r"^Node\s+\d+\s+MemTotal:\s+(\d+)\s*kB", re.MULTILINE)


def parse_cpu_list(text: str) -> list[int]:
    """A sysfs CPU list such as ``0-3,8,10-11`` as sorted integers."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        first, _, last = part.partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return sorted(cpus)


def _nodes(root: Path) -> list[tuple[int, Path]]:
    found = []
    for entry in root.iterdir():
        match = _NODE.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry))
    return sorted(found)


def numa_topology(nodes_root: Path = NODES, net_root: Path = NET) -> dict[str, Any]:
    """``{"ram": [...], "cpus": [...], "nics": [...]}`` read from sysfs.

    ``cpus`` has one entry per physical core of a node (``cpu`` is the core
    id, ``thread_siblings`` the logical CPUs sharing it). Raises
    :class:`IncompatibleNumaFormatError` when the node directory is missing
    or malformed.
    """
    try:
        nodes = _nodes(nodes_root)
    except OSError as exc:
        raise errors.IncompatibleNumaFormatError(f"cannot read {nodes_root}: {exc}") from exc
    if not nodes:
        raise errors.IncompatibleNumaFormatError(f"no NUMA nodes under {nodes_root}")
    ram: list[dict[str, int]] = []
    cpus: list[dict[str, Any]] = []
    for node_id, path in nodes:
        try:
            match = _MEMTOTAL.search((path / "meminfo").read_text())
        except OSError as exc:
            raise errors.IncompatibleNumaFormatError(f"node{node_id} meminfo: {exc}") from exc
        if not match:
            raise errors.IncompatibleNumaFormatError(f"no MemTotal in node{node_id} meminfo")
        ram.append({"numa_node": node_id, "size_kb": int(match.group(1))})
        cores: dict[int, list[int]] = {}
        for entry in sorted(path.iterdir(), key=lambda p: p.name):
            if not _CPU.match(entry.name) or not (entry / "topology").is_dir():
                continue
            try:
                core = int((entry / "topology" / "core_id").read_text())
                siblings = parse_cpu_list((entry / "topology" / "thread_siblings_list").read_text())
            except (OSError, ValueError) as exc:
                raise errors.IncompatibleNumaFormatError(f"{entry}: {exc}") from exc
            cores.setdefault(core, siblings)
        cpus.extend({"cpu": core, "numa_node": node_id, "thread_siblings": siblings}
                    for core, siblings in sorted(cores.items()))
    nics = []
    if net_root.is_dir():
        for entry in sorted(net_root.iterdir(), key=lambda p: p.name):
            numa_file = entry / "device" / "numa_node"
            try:
                nics.append({"name": entry.name, "numa_node": int(numa_file.read_text())})
            except (OSError, ValueError):
                continue  # virtual interfaces have no device
    return {"ram": ram, "cpus": cpus, "nics": nics}
