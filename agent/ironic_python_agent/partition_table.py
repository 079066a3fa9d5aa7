# SPDX-License-Identifier: Apache-2.0
"""Partition tables (GPT or MBR) as ``sfdisk --json`` reports them."""

from __future__ import annotations

import json
from dataclasses import dataclass

from ironic_python_agent import run


@dataclass(frozen=True)
class Partition:
    number: int
    start: int  # sectors
    size: int  # sectors
    type: str
    uuid: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class PartitionTable:
    label: str  # "gpt" or "dos"
    id: str
    sector_size: int
    partitions: tuple[Partition, ...]
    last_lba: int | None = None  # GPT: the last usable sector

    def by_number(self, number: int) -> Partition | None:
        return next((p for p in self.partitions if p.number == number), None)


def parse_sfdisk_json(text: str) -> PartitionTable:
    """``sfdisk --json`` output as a :class:`PartitionTable`."""
    table = json.loads(text)["partitiontable"]
    parts = []
    for entry in table.get("partitions", []):
        node = entry["node"]
        digits = len(node) - len(node.rstrip("0123456789"))
        parts.append(Partition(number=int(node[-digits:]), start=int(entry["start"]),
                               size=int(entry["size"]), type=str(entry.get("type", "")),
                               uuid=entry.get("uuid"), name=entry.get("name")))
    return PartitionTable(label=table["label"], id=str(table.get("id", "")),
                          sector_size=int(table.get("sectorsize", 512)),
                          partitions=tuple(parts),
                          last_lba=int(table["lastlba"]) if "lastlba" in table else None)


def read_partition_table(device: str) -> PartitionTable | None:
    """The partition table of *device*, or None when it has none."""
    try:
        out = run.run(["sfdisk", "--json", device]).stdout
    except run.CommandError as exc:
        if "does not contain a recognized partition table" in exc.stderr:
            return None
        raise
    return parse_sfdisk_json(out) if out.strip() else None


def partition_path(device: str, number: int) -> str:
    sep = "p" if device[-1:].isdigit() else ""
    return f"{device}{sep}{number}"
