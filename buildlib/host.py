#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The host packages a ./build.sh target needs, from buildlib/host-programs.toml.

    python3 buildlib/host.py install TARGET... [--package PKG]...
    python3 buildlib/host.py packages TARGET...

``install`` checks every program (on PATH or in the sbin directories) and every
listed package; as root with apt it installs the missing packages, otherwise it
prints the apt-get command and exits 1. Runs with Debian's python3 alone (no
venv, no imports from this checkout), as the first thing on a fresh machine.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
LIST = HERE / "host-programs.toml"
SBIN = "/usr/local/sbin:/usr/sbin:/sbin"
APT = ["apt-get", "-o", "DPkg::Lock::Timeout=900"]


class HostError(Exception):
    """Missing host packages that could not be installed."""


@dataclass
class Needs:
    """What one or more targets need from the host."""

    programs: dict[str, str] = field(default_factory=dict)   # program -> package
    packages: set[str] = field(default_factory=set)          # packages for files/libraries
    venv: dict[str, str] = field(default_factory=dict)       # program -> PyPI project
    engines: dict[str, str] = field(default_factory=dict)    # container engines, in order


def load(path: Path = LIST) -> dict[str, dict]:
    return tomllib.loads(path.read_text())


def needs(targets: list[str], table: dict[str, dict] | None = None) -> Needs:
    """Everything the named targets need, with their includes."""
    table = load() if table is None else table
    out = Needs()
    seen: set[str] = set()

    def add(name: str) -> None:
        if name in seen:
            return
        if name not in table:
            raise HostError(f"unknown target {name!r} in {LIST.name} "
                            f"(known: {', '.join(sorted(table))})")
        seen.add(name)
        entry = table[name]
        for inc in entry.get("includes", []):
            add(inc)
        out.programs.update(entry.get("programs", {}))
        out.packages.update(entry.get("packages", []))
        out.venv.update(entry.get("venv", {}))
        out.engines.update(entry.get("engines", {}))

    for target in targets:
        add(target)
    return out


def which(program: str) -> str | None:
    return shutil.which(program) or shutil.which(program, path=SBIN)


def installed(package: str) -> bool:
    try:
        done = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package],
                              capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return False
    return done.returncode == 0 and "ok installed" in done.stdout


def missing(need: Needs) -> list[str]:
    """Debian packages to install: those of absent programs, and absent packages."""
    wanted = {pkg for prog, pkg in need.programs.items() if which(prog) is None}
    wanted |= {pkg for pkg in need.packages if not installed(pkg)}
    return sorted(wanted)


def apt_install(packages: list[str], why: str, cache: Path | None = None) -> None:
    """apt-get install *packages* (after an update at most every 6 h), or explain."""
    if not packages:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise HostError(f"{why}: missing host packages; run: "
                        f"sudo apt-get install {' '.join(packages)}")
    print(f"{why}: installing host packages: {' '.join(packages)}", file=sys.stderr, flush=True)
    stamp = (cache or Path(os.environ.get("CACHE", HERE.parent / ".cache"))) / ".apt-updated"
    stamp.parent.mkdir(parents=True, exist_ok=True)
    # One apt run at a time: builds started together (the test suite's background
    # builds) would otherwise meet apt-get update's lists lock, which does not wait.
    with open(stamp.with_name(".apt.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not stamp.exists() or time.time() - stamp.stat().st_mtime > 6 * 3600:
            subprocess.run([*APT, "update", "-q"], check=True, stdout=sys.stderr)
            stamp.touch()
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        done = subprocess.run([*APT, "install", "-y", "-q", "--no-install-recommends",
                               *packages], env=env, stdout=sys.stderr, check=False)
    if done.returncode != 0:
        raise HostError(f"{why}: apt-get install {' '.join(packages)} failed "
                        f"(exit {done.returncode})")


def ensure(targets: list[str], extra: list[str] = ()) -> None:
    """Install what *targets* need (and the *extra* packages) when it is missing."""
    need = needs(targets)
    need.packages.update(extra)
    apt_install(missing(need), "/".join(targets))


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in ("install", "packages"):
        print(__doc__.strip().splitlines()[2:4], file=sys.stderr)
        return 2
    targets = [a for a in argv[1:] if not a.startswith("--package=")]
    extra = [a.split("=", 1)[1] for a in argv[1:] if a.startswith("--package=")]
    try:
        if argv[0] == "packages":
            need = needs(targets)
            print(" ".join(sorted(set(need.programs.values()) | need.packages | set(extra))))
        else:
            ensure(targets, extra)
    except (HostError, subprocess.CalledProcessError) as exc:
        print(f"build.sh: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
