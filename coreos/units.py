# SPDX-License-Identifier: Apache-2.0
"""The host configuration (YAML) and the systemd units rendered from it (Jinja2).

Pure functions: text in, ``{path inside the root: file content}`` out, so the
rendering is tested without building anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import yaml

UNITS_DIR = Path(__file__).resolve().parent / "units"

# template -> path of the rendered file inside the host root
RENDERED: dict[str, str] = {
    "lean-ipa-container.service.j2": "etc/systemd/system/lean-ipa-container.service",
    "lean-ipa.service.j2": "etc/systemd/system/lean-ipa.service",
    "lean-ipa-ssh-keys.service.j2": "etc/systemd/system/lean-ipa-ssh-keys.service",
    "dhcp.network.j2": "etc/systemd/network/80-lean-ipa-dhcp.network",
    "wait-online.conf.j2": "etc/systemd/system/systemd-networkd-wait-online.service.d/lean-ipa.conf",
    "ssh-condition.conf.j2": "etc/systemd/system/ssh.service.d/lean-ipa.conf",
    "lean-ipa-rescue.path.j2": "etc/systemd/system/lean-ipa-rescue.path",
    "lean-ipa-rescue.service.j2": "etc/systemd/system/lean-ipa-rescue.service",
    "lean-ipa-network.service.j2": "etc/systemd/system/lean-ipa-network.service",
}

# symlink inside the root -> its target: the units the host starts at boot (and
# the ones it must not: masked, -> /dev/null)
ENABLED: dict[str, str] = {
    "etc/systemd/system/multi-user.target.wants/lean-ipa.service":
        "/etc/systemd/system/lean-ipa.service",
    "etc/systemd/system/multi-user.target.wants/lean-ipa-ssh-keys.service":
        "/etc/systemd/system/lean-ipa-ssh-keys.service",
    "etc/systemd/system/multi-user.target.wants/lean-ipa-rescue.path":
        "/etc/systemd/system/lean-ipa-rescue.path",
    "etc/systemd/system/multi-user.target.wants/systemd-networkd.service":
        "/usr/lib/systemd/system/systemd-networkd.service",
    "etc/systemd/system/sockets.target.wants/systemd-networkd.socket":
        "/usr/lib/systemd/system/systemd-networkd.socket",
    "etc/systemd/system/network-online.target.wants/systemd-networkd-wait-online.service":
        "/usr/lib/systemd/system/systemd-networkd-wait-online.service",
    "etc/systemd/system/systemd-networkd.service.wants/lean-ipa-network.service":
        "/etc/systemd/system/lean-ipa-network.service",
    # lean-ipa-network applies ip= and tells networkd what it did; the generator would
    # turn the same ip= into .network files of its own (a user's host may enable it).
    "etc/systemd/system/systemd-network-generator.service": "/dev/null",
}


class ConfigError(ValueError):
    """The host configuration is not usable; the message names the key."""


@dataclass(frozen=True)
class Bind:
    source: str
    target: str
    read_only: bool

    @property
    def flag(self) -> str:
        option = "--bind-ro" if self.read_only else "--bind"
        return f"{option}={self.source}:{self.target}"


def parse_bind(text: str) -> Bind:
    """``host[:container[:ro|rw]]`` as a Bind."""
    parts = str(text).split(":")
    if not parts[0].startswith("/") or len(parts) > 3:
        raise ConfigError(f"binds: {text!r} is not host[:container[:ro]] with absolute paths")
    target = parts[1] if len(parts) > 1 and parts[1] else parts[0]
    mode = parts[2] if len(parts) > 2 else "rw"
    if mode not in ("ro", "rw") or not target.startswith("/"):
        raise ConfigError(f"binds: {text!r} is not host[:container[:ro]] with absolute paths")
    return Bind(parts[0], target, mode == "ro")


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` on top of ``base``; mappings merge key by key, the rest replaces."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config(default_text: str, override_text: str | None = None) -> dict[str, Any]:
    """The defaults (coreos/host-config.yaml) with a user's file on top, checked."""
    config = yaml.safe_load(default_text) or {}
    if override_text is not None:
        override = yaml.safe_load(override_text) or {}
        if not isinstance(override, Mapping):
            raise ConfigError("host config: the top level must be a mapping")
        unknown = sorted(set(override) - set(config))
        if unknown:
            raise ConfigError(f"host config: unknown keys {', '.join(unknown)}")
        config = merge(config, override)
    machine = str(config.get("machine", ""))
    if not machine.replace("-", "").replace("_", "").isalnum():
        raise ConfigError(f"machine: {machine!r} must be letters, digits, '-' or '_'")
    if not isinstance(config["agent"].get("command"), list) or not config["agent"]["command"]:
        raise ConfigError("agent.command: must be a non-empty list (argv)")
    if not isinstance(config.get("network_command"), list) or not config["network_command"]:
        raise ConfigError("network_command: must be a non-empty list (argv)")
    return config


def render_units(config: Mapping[str, Any], templates: Path = UNITS_DIR) -> dict[str, str]:
    """Every rendered file, as path inside the host root -> content."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(templates),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             autoescape=False)
    user = str(config["login_user"])
    context = {
        **config,
        "binds": [parse_bind(b) for b in config.get("binds", [])],
        "login_home": "/root" if user == "root" else f"/home/{user}",
    }
    return {path: env.get_template(name).render(context) for name, path in RENDERED.items()}
