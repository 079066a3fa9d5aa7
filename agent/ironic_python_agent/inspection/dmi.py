# SPDX-License-Identifier: Apache-2.0
"""``dmidecode -t bios -t processor -t memory`` output as the ``dmi`` inspection key."""

from __future__ import annotations

from typing import Any

from ironic_python_agent.run import run

DmiRecord = dict[str, Any]


def parse_records(text: str) -> list[tuple[str, DmiRecord]]:
    """Records of dmidecode's text output as ``(title, fields)`` pairs.

    A record is a ``Handle 0x…, DMI type N, M bytes`` line, a title line and
    tab-indented ``Key: Value`` lines; the Handle line is kept as ``Handle``.
    A key with an empty value followed by lines indented twice
    (``Characteristics:``) becomes a list of those lines.
    """
    records: list[tuple[str, DmiRecord]] = []
    fields: DmiRecord | None = None
    title: str | None = None
    list_key: str | None = None
    for line in text.splitlines():
        if line.startswith("Handle "):
            fields, title, list_key = {"Handle": line.strip()}, None, None
            continue
        if fields is None or not line.strip():
            if not line.strip():
                fields = None
            continue
        if title is None:
            title = line.strip()
            records.append((title, fields))
            continue
        if line.startswith("\t\t") and list_key is not None:
            fields[list_key].append(line.strip())
            continue
        key, sep, value = line.strip().partition(":")
        if not sep:
            continue
        value = value.strip()
        if value:
            fields[key] = value
            list_key = None
        else:
            fields[key] = []
            list_key = key
    return records


def parse_dmi(text: str) -> dict[str, Any]:
    """``{"bios": {...}, "cpu": [...], "memory": {..., "Number Of Devices": N, "devices": [...]}}``.

    ``bios`` holds the BIOS Information record, ``cpu`` one entry per
    Processor Information record, ``memory`` the first Physical Memory Array's
    fields (without its Handle) with ``Number Of Devices`` summed over all
    arrays, and ``devices`` one entry per Memory Device record.
    """
    bios: DmiRecord = {}
    cpus: list[DmiRecord] = []
    memory: DmiRecord = {}
    devices: list[DmiRecord] = []
    slots = 0
    arrays = 0
    for title, fields in parse_records(text):
        if title == "BIOS Information" and not bios:
            bios = fields
        elif title == "Processor Information":
            cpus.append(fields)
        elif title == "Physical Memory Array":
            arrays += 1
            try:
                slots += int(fields.get("Number Of Devices", 0))
            except ValueError:
                pass
            for key, value in fields.items():
                if key != "Handle":
                    memory.setdefault(key, value)
        elif title == "Memory Device":
            devices.append(fields)
    if arrays:
        memory["Number Of Devices"] = slots
    memory["devices"] = devices
    return {"bios": bios, "cpu": cpus, "memory": memory}


def collect_dmi() -> dict[str, Any]:
    """Run dmidecode and parse it; raises ``CommandError`` when it fails."""
    out = run(["dmidecode", "-t", "bios", "-t", "processor", "-t", "memory"]).stdout
    return parse_dmi(out)
