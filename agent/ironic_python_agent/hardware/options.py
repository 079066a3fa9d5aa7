# SPDX-License-Identifier: Apache-2.0
"""The configuration the hardware code reads, handed over by the agent.

The agent calls :func:`configure` once with its ``ConfigOpts`` and parsed
kernel parameters; until then (tests, third-party tools) the global
``oslo_config.cfg.CONF`` and no parameters are used. Options are read by their
upstream names with a default, so this works whether or not the agent's config
module registered them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from oslo_config import cfg

# Our own options (not upstream): documented in README.rst.
OWN_OPTS = [
    cfg.ListOpt("block_device_allowlist", default=[],
                help="Only these block devices (kernel names such as 'sdb' or "
                     "'loop3', or /dev paths) are listed, used and erased by the "
                     "generic hardware manager. Empty means all disks. Loop "
                     "devices are listed only when named here."),
]

_state: dict[str, Any] = {"conf": None, "params": {}}


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register our own options on *conf*; harmless when already there."""
    for opt in OWN_OPTS:
        try:
            conf.register_opt(opt)
        except cfg.DuplicateOptError:
            pass


def configure(conf: cfg.ConfigOpts | None = None,
              params: Mapping[str, str] | None = None) -> None:
    """Hand the agent's configuration and kernel parameters to the hardware code."""
    if conf is not None:
        register_opts(conf)
        _state["conf"] = conf
    if params is not None:
        _state["params"] = dict(params)


def conf() -> cfg.ConfigOpts:
    current = _state["conf"]
    if current is None:
        current = cfg.CONF
        register_opts(current)
        _state["conf"] = current
    return current  # type: ignore[no-any-return]


def params() -> dict[str, str]:
    return _state["params"]  # type: ignore[no-any-return]


def get(name: str, default: Any, group: str | None = None) -> Any:
    """The value of option *name*, or *default* when it is not registered."""
    c = conf()
    try:
        holder = getattr(c, group) if group else c
        value = getattr(holder, name)
    except (cfg.NoSuchOptError, cfg.NoSuchGroupError, AttributeError):
        return default
    except cfg.Error:
        return default
    return default if value is None else value


def allowlist() -> set[str]:
    """Kernel names of the devices the allowlist admits (empty: no restriction)."""
    names = get("block_device_allowlist", []) or []
    if isinstance(names, str):
        names = names.split(",")
    return {n.strip().removeprefix("/dev/") for n in names if n and n.strip()}
