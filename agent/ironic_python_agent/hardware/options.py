# SPDX-License-Identifier: Apache-2.0
"""What the hardware code derives from the process's configuration (:mod:`config`)."""

from __future__ import annotations

from ironic_python_agent import config


def allowlist() -> set[str]:
    """Kernel names of the devices the allowlist admits (empty: no restriction)."""
    names = config.current().block_device_allowlist or []
    if isinstance(names, str):
        names = names.split(",")
    return {n.strip().removeprefix("/dev/") for n in names if n and n.strip()}
