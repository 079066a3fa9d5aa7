# SPDX-License-Identifier: Apache-2.0
"""The kernel-module selection of every image (buildlib/kernel-modules.toml)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

LIST = Path(__file__).resolve().parent / "kernel-modules.toml"


@dataclass(frozen=True)
class Selection:
    names: tuple[str, ...]          # every image, with dependencies
    load: tuple[str, ...]           # loaded at boot
    coreos_keep: tuple[str, ...]    # trees (paths under lib/modules/<v>/) coreos keeps
    coreos_exclude: tuple[str, ...]
    dib_prune: tuple[str, ...]      # trees (under kernel/) dib drops


def selection(path: Path = LIST, arch: str = "x86_64") -> Selection:
    """The selection for *arch* (buildlib/arch.py's name): ``names`` with that
    architecture's ``[arch.<name>]`` ``add`` and without its ``drop``."""
    d = tomllib.loads(path.read_text())
    per = d.get("arch", {}).get(arch, {})
    drop = set(per.get("drop", ()))
    names = [n for n in d["names"] if n not in drop]
    names += [n for n in per.get("add", ()) if n not in names]
    return Selection(names=tuple(names), load=tuple(d["load"]),
                     coreos_keep=tuple(d["coreos"]["keep"]),
                     coreos_exclude=tuple(d["coreos"]["exclude"]),
                     dib_prune=tuple(d["dib"]["prune"]))
