# SPDX-License-Identifier: Apache-2.0
"""Helpers for the hardware tests: loop devices, fake tools, a hardware config.

Loop devices are sparse files of our own attached with ``losetup --find --show``
and always detached; the generic manager is restricted to them through
``[DEFAULT]block_device_allowlist`` so nothing else is ever listed or erased.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from oslo_config import cfg

from ironic_python_agent import config
from ironic_python_agent.hardware import managers, node_cache

FAKEBIN = Path(__file__).resolve().parent / "fakebin"
SAMPLES = Path(__file__).resolve().parent / "samples"
MiB = 1024 * 1024


def sample(*parts: str) -> str:
    return SAMPLES.joinpath(*parts).read_text()


@contextlib.contextmanager
def loop_device(directory: Path, size: int, name: str = "disk.img",
                partitions: int = 0) -> Iterator[str]:
    """A loop device over a sparse file in *directory*; detached afterwards."""
    image = directory / name
    with open(image, "wb") as f:
        f.truncate(size)
    dev = subprocess.run(["losetup", "--find", "--show", "--partscan", str(image)],
                         check=True, capture_output=True, text=True).stdout.strip()
    try:
        if partitions:
            argv = ["sgdisk"]
            for i in range(1, partitions + 1):
                end = "0" if i == partitions else f"+{size // MiB // (partitions + 1)}M"
                argv.append(f"-n{i}:0:{end}")
            subprocess.run([*argv, dev], check=True, capture_output=True)
            subprocess.run(["partx", "-a", dev], check=False, capture_output=True)
            subprocess.run(["partx", "-u", dev], check=False, capture_output=True)
        yield dev
    finally:
        subprocess.run(["partx", "-d", dev], check=False, capture_output=True)
        subprocess.run(["losetup", "-d", dev], check=False, capture_output=True)
        image.unlink(missing_ok=True)


def hardware_conf(allow: list[str] | None = None, params: dict[str, str] | None = None,
                  **overrides: Any) -> cfg.ConfigOpts:
    """The agent's options at their defaults, handed over as the agent does (config.use),
    restricted to the devices in *allow*."""
    conf = config.load({}, [], conf=cfg.ConfigOpts(), config_files=[], config_dirs=[])
    config.use(conf, params or {})
    conf.set_override("block_device_allowlist",
                      [os.path.basename(d) for d in (allow or [])])
    conf.set_override("disk_wait_attempts", 0)
    for key, value in overrides.items():
        conf.set_override(key, value)
    return conf


def use_managers(monkeypatch: Any, *found: Any) -> None:
    """Make *found* the active managers (best first), as loading would have."""
    monkeypatch.setattr(managers, "_managers", [
        {"name": type(m).__name__, "manager": m, "support": int(m.evaluate_hardware_support())}
        for m in found])


def reset_hardware() -> None:
    managers.clear_managers()
    node_cache.forget()
    config.forget()


def fake_tools_env(state: Path, scenario: str = "") -> dict[str, str]:
    """Environment putting the fake hardware tools first on PATH."""
    return {"PATH": f"{FAKEBIN}:{os.environ.get('PATH', '')}",
            "FAKE_HW_STATE": str(state), "FAKE_HW_SCENARIO": scenario}
