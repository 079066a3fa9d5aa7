# SPDX-License-Identifier: Apache-2.0
"""Shared code of the fake hardware tools: scenario, state and sample lookup.

FAKE_HW_SCENARIO is a comma list of tool=scenario (``hdparm=locked,nvme=crypto``);
FAKE_HW_STATE is a directory where a fake keeps what the "device" remembers
(an ATA password set, an erase done); every invocation is appended to
``calls.log`` there for debugging failed tests (tests assert on outcomes only).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def scenario(tool: str, default: str) -> str:
    for item in os.environ.get("FAKE_HW_SCENARIO", "").split(","):
        name, _, value = item.partition("=")
        if name.strip() == tool and value:
            return value.strip()
    return default


def state_dir() -> Path:
    path = Path(os.environ.get("FAKE_HW_STATE", "/tmp/fake-hw-state"))
    path.mkdir(parents=True, exist_ok=True)
    with open(path / "calls.log", "a") as log:
        log.write(" ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) + "\n")
    return path


def load_state(tool: str, initial: dict) -> dict:
    path = state_dir() / f"{tool}.json"
    if path.exists():
        return json.loads(path.read_text())
    return dict(initial)


def save_state(tool: str, state: dict) -> None:
    (state_dir() / f"{tool}.json").write_text(json.dumps(state))


def sample(*parts: str) -> str:
    return SAMPLES.joinpath(*parts).read_text()
