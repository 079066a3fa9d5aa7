# SPDX-License-Identifier: Apache-2.0
"""Root device hints: parsing, matching and the choice of the install disk.

Hints are what Ironic stores in ``properties.root_device`` or
``instance_info.root_device``: ``{"size": ">= 100", "model": "<in> samsung"}``.
A string without an operator means ``s==``, an integer means ``==``; strings are
compared lower-cased and URL-quoted (so spaces survive tokenising), ``size`` in
whole GiB, ``rotational`` as a boolean; ``serial`` and ``wwn`` match any of the
device's known values. Operators are those of oslo's ``specs_matcher``.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from ironic_python_agent import errors
from ironic_python_agent.hardware.devices import BlockDevice

GiB = 1024 ** 3
MIN_ROOT_SIZE = 4 * GiB

STRING_HINTS = ("model", "wwn", "serial", "vendor", "wwn_with_extension",
                "wwn_vendor_extension", "name", "hctl", "by_path", "tran")
VALID_HINTS = frozenset(STRING_HINTS + ("size", "rotational"))


def _num(op: Callable[[float, float], bool]) -> Callable[[Any, Any], bool]:
    return lambda x, y: op(float(x), float(y))


NUMERIC_OPS: dict[str, Callable[[Any, Any], bool]] = {
    # "=" is ">=" in specs_matcher; kept for compatibility with what Ironic accepts.
    "=": _num(operator.ge), "==": _num(operator.eq), "!=": _num(operator.ne),
    "<=": _num(operator.le), "<": _num(operator.lt), ">=": _num(operator.ge),
    ">": _num(operator.gt),
}
STRING_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "s==": operator.eq, "s!=": operator.ne, "s<": operator.lt, "s<=": operator.le,
    "s>": operator.gt, "s>=": operator.ge,
}
ALL_OPS = set(NUMERIC_OPS) | set(STRING_OPS) | {"<in>", "<or>", "<all-in>"}


@dataclass(frozen=True)
class Hint:
    key: str
    op: str
    values: tuple[Any, ...]


def _normalize_string(key: str, value: str) -> str:
    value = value.strip()
    if key == "name" and not value.startswith("/dev/"):
        value = "/dev/" + value
    if key == "by_path" and not value.startswith("/dev/disk/by-path/"):
        value = "/dev/disk/by-path/" + value
    return quote(value.lower(), safe="/:.,_-+@")


def _split_operator(text: str) -> tuple[str | None, str]:
    head, _, rest = text.strip().partition(" ")
    if head in ALL_OPS:
        return head, rest.strip()
    return None, text.strip()


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "t", "true", "on", "y", "yes"):
        return True
    if text in ("0", "f", "false", "off", "n", "no"):
        return False
    raise ValueError(f"root device hint 'rotational' must be a boolean, not {value!r}")


def parse_hints(hints: dict[str, Any] | None) -> list[Hint]:
    """Validate *hints* and turn them into comparable :class:`Hint` objects.

    Raises ValueError naming the bad hint.
    """
    parsed: list[Hint] = []
    for key, raw in (hints or {}).items():
        if key not in VALID_HINTS:
            raise ValueError(f"unknown root device hint {key!r} (valid: "
                             f"{', '.join(sorted(VALID_HINTS))})")
        if key == "rotational":
            parsed.append(Hint(key, "==", (_as_bool(raw),)))
            continue
        if key == "size":
            if isinstance(raw, bool):
                raise ValueError("root device hint 'size' must be an integer (GiB)")
            if isinstance(raw, (int, float)):
                op, rest = "==", str(int(raw))
            else:
                found, rest = _split_operator(str(raw))
                op = found or "=="
            if op not in NUMERIC_OPS:
                raise ValueError(f"operator {op!r} cannot be used with root device hint 'size'")
            try:
                value = int(rest)
            except ValueError:
                raise ValueError(f"root device hint 'size' must be an integer number of "
                                 f"GiB, not {raw!r}") from None
            if value <= 0:
                raise ValueError(f"root device hint 'size' must be positive, not {raw!r}")
            parsed.append(Hint(key, op, (value,)))
            continue
        if not isinstance(raw, str):
            raw = str(raw)
        found, rest = _split_operator(raw)
        op = found or "s=="
        if op in NUMERIC_OPS:
            raise ValueError(f"operator {op!r} cannot be used with root device hint {key!r}")
        if op == "<or>":
            values = tuple(_normalize_string(key, v) for v in rest.split("<or>") if v.strip())
        elif op == "<all-in>":
            values = tuple(_normalize_string(key, v) for v in rest.split())
        else:
            values = (_normalize_string(key, rest),)
        if not values or not all(values):
            raise ValueError(f"root device hint {key!r} has no value")
        parsed.append(Hint(key, op, values))
    return parsed


def _device_values(device: BlockDevice, key: str) -> list[Any]:
    if key == "size":
        return [device.size // GiB]
    if key == "rotational":
        return [bool(device.rotational)]
    if key == "serial":
        raw: Iterable[Any] = device.serials or [device.serial]
    elif key == "wwn":
        raw = device.wwns or [device.wwn]
    else:
        raw = [getattr(device, key, None)]
    return [_normalize_string(key, str(v)) for v in raw if v not in (None, "")]


def _match_one(hint: Hint, value: Any) -> bool:
    if hint.key == "rotational":
        return bool(value == hint.values[0])
    if hint.op in NUMERIC_OPS:
        return NUMERIC_OPS[hint.op](value, hint.values[0])
    if hint.op in STRING_OPS:
        return bool(STRING_OPS[hint.op](value, hint.values[0]))
    if hint.op == "<in>":
        return hint.values[0] in value
    if hint.op == "<or>":
        return value in hint.values
    if hint.op == "<all-in>":
        return all(v in value for v in hint.values)
    return False


def device_matches(device: BlockDevice, hints: Sequence[Hint]) -> bool:
    for hint in hints:
        values = _device_values(device, hint.key)
        if not any(_match_one(hint, v) for v in values):
            return False
    return True


def find_devices(devices: Iterable[BlockDevice], hints: dict[str, Any]) -> list[BlockDevice]:
    parsed = parse_hints(hints)
    return [d for d in devices if device_matches(d, parsed)]


def remove_skipped(devices: Sequence[BlockDevice],
                   skip_list: Iterable[dict[str, Any]] | None) -> list[BlockDevice]:
    """Drop the devices matching any hint dict of ``skip_block_devices``."""
    rules = [parse_hints({k: v for k, v in entry.items() if k != "volume_name"})
             for entry in (skip_list or []) if isinstance(entry, dict)]
    rules = [r for r in rules if r]
    return [d for d in devices if not any(device_matches(d, r) for r in rules)]


def choose_root_device(devices: Sequence[BlockDevice],
                       hints: dict[str, Any] | None) -> BlockDevice:
    """The install disk: the first device matching *hints*, else the smallest ≥ 4 GiB."""
    if hints:
        try:
            matching = find_devices(devices, hints)
        except ValueError as exc:
            raise errors.DeviceNotFound(f"Invalid root device hints {hints}: {exc}") from None
        if not matching:
            raise errors.DeviceNotFound(
                f"No suitable device was found for deployment using these hints {hints}; "
                f"devices seen: {', '.join(d.name for d in devices) or 'none'}")
        return matching[0]
    for device in sorted(devices, key=lambda d: (d.size, d.name)):
        if device.size >= MIN_ROOT_SIZE:
            return device
    raise errors.DeviceNotFound(
        "No suitable device was found for deployment - root device hints were not provided "
        f"and all found block devices are smaller than {MIN_ROOT_SIZE // GiB} GiB "
        f"(devices seen: {', '.join(d.name for d in devices) or 'none'})")
