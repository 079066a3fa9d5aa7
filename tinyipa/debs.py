# SPDX-License-Identifier: Apache-2.0
"""Debian packages without a chroot: a private apt state, .debs, extracted trees.

apt runs with its own sources list, lists and empty dpkg status under the
cache directory, so the host's package state is neither read nor changed
and the resolved set is the full dependency closure of what we ask for.
Each .deb is unpacked once with ``dpkg-deb -x`` into its own directory;
:class:`PackageTree` overlays them as one merged-/usr file system view.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from tinyipa.log import Log

MIRROR = "http://deb.debian.org/debian"
SECURITY = "http://deb.debian.org/debian-security"
INST = re.compile(r"^Inst (\S+) \((\S+) .*\[(\S+)\]\)", re.M)
MERGED = {"bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib", "lib64": "usr/lib64"}


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    arch: str

    @property
    def filename(self) -> str:
        return f"{self.name}_{self.version.replace(':', '%3a')}_{self.arch}.deb"


def normalize(path: str) -> str:
    """Absolute path in the merged-/usr layout (``/bin/x`` -> ``/usr/bin/x``)."""
    parts = [p for p in path.split("/") if p and p != "."]
    out: list[str] = []
    for part in parts:
        if part == "..":
            if out:
                out.pop()
        else:
            out.append(part)
    if out and out[0] in MERGED:
        out[0:1] = MERGED[out[0]].split("/")
    return "/" + "/".join(out)


class Apt:
    """apt-get with a private state directory for one Debian release and
    architecture (any architecture the mirror has: nothing of it runs here)."""

    def __init__(self, cache: Path, release: str, log: Log, mirror: str = MIRROR,
                 security: str = SECURITY, arch: str = "amd64") -> None:
        # one state per architecture: the lists are per architecture (the
        # .debs, named with theirs, share one directory)
        self.dir = cache / "apt" / (release if arch == "amd64" else f"{release}-{arch}")
        self.arch = arch
        self.archives = cache / "debs"
        self.release = release
        self.log = log
        self.sources = "\n".join([
            f"deb {mirror} {release} main",
            f"deb {mirror} {release}-updates main",
            f"deb {security} {release}-security main", ""])

    def _argv(self, *args: str) -> list[str]:
        d = self.dir
        opts = {
            "Dir::State": d, "Dir::State::Lists": d / "lists",
            "Dir::State::status": d / "status", "Dir::Cache": d,
            "Dir::Cache::archives": self.archives,
            "Dir::Etc::SourceList": d / "sources.list",
            "Dir::Etc::SourceParts": d / "sources.list.d",
            "APT::Architecture": self.arch, "APT::Architectures": self.arch,
            "APT::Install-Recommends": "0",
            "APT::Get::List-Cleanup": "0", "Debug::NoLocking": "1",
            "Acquire::Languages": "none", "Acquire::Retries": "3",
        }
        argv = ["apt-get", "-q"]
        for key, value in opts.items():
            argv += ["-o", f"{key}={value}"]
        return argv + list(args)

    def update(self, max_age: float = 24 * 3600) -> bool:
        """Refresh the package lists when missing, changed or older than *max_age*."""
        for sub in ("lists/partial", "sources.list.d"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        (self.archives / "partial").mkdir(parents=True, exist_ok=True)
        status = self.dir / "status"
        if not status.exists():
            status.write_text("")
        sources = self.dir / "sources.list"
        stamp = self.dir / "updated"
        fresh = (stamp.exists() and sources.exists() and sources.read_text() == self.sources
                 and time.time() - stamp.stat().st_mtime < max_age)
        if fresh:
            return False
        sources.write_text(self.sources)
        self.log.run(self._argv("update"))
        stamp.touch()
        return True

    def resolve(self, names: list[str]) -> list[Package]:
        """The dependency closure of *names* (no recommends), as apt plans it.

        Remembered until the package lists change (apt takes seconds to plan).
        """
        stamp = self.dir / "updated"
        key = hashlib.sha256("\n".join(sorted(names) + [
            self.sources, str(stamp.stat().st_mtime if stamp.exists() else 0)]).encode())
        memo = self.dir / f"resolved-{key.hexdigest()[:16]}.json"
        if memo.exists():
            return [Package(**p) for p in json.loads(memo.read_text())]
        out = self.log.run(self._argv("install", "-s", "-y", *names), capture=True)
        pkgs = sorted((Package(*m) for m in INST.findall(out)), key=lambda p: p.name)
        if not pkgs:
            raise RuntimeError(f"apt resolved nothing for {names}")
        for old in self.dir.glob("resolved-*.json"):
            old.unlink()
        memo.write_text(json.dumps([p.__dict__ for p in pkgs]))
        return pkgs

    def download(self, pkgs: list[Package]) -> list[Path]:
        missing = [p for p in pkgs if not (self.archives / p.filename).exists()]
        if missing:
            self.log.run(self._argv("install", "--download-only", "-y",
                                    *[f"{p.name}={p.version}" for p in missing]))
        paths = [self.archives / p.filename for p in pkgs]
        lost = [str(p) for p in paths if not p.exists()]
        if lost:
            raise RuntimeError(f"apt did not download: {', '.join(lost)}")
        return paths


def extract(deb: Path, into: Path, log: Log) -> Path:
    """Unpack *deb* once into ``into/<deb name>/`` and return that directory."""
    dest = into / deb.name.removesuffix(".deb")
    if dest.is_dir():
        return dest
    tmp = into / (dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    log.run(["dpkg-deb", "-x", str(deb), str(tmp)])
    tmp.rename(dest)
    return dest


class PackageTree:
    """A read-only merged view of several unpacked packages.

    Paths are absolute and normalized to the merged-/usr layout; the first
    package providing a path wins.
    """

    def __init__(self, unpacked: dict[Package, Path]) -> None:
        self.files: dict[str, tuple[Path, Package]] = {}
        self.dirs: set[str] = set()
        for pkg, top in unpacked.items():
            for dirpath, dirnames, filenames in os.walk(top):
                rel = "/" + os.path.relpath(dirpath, top)
                for name in filenames + dirnames:
                    real = Path(dirpath) / name
                    vpath = normalize(f"{rel}/{name}")
                    if name in dirnames and not real.is_symlink():
                        self.dirs.add(vpath)
                        continue
                    self.files.setdefault(vpath, (real, pkg))

    def lookup(self, vpath: str) -> tuple[Path, Package] | None:
        return self.files.get(normalize(vpath))

    def resolve(self, vpath: str) -> str | None:
        """Follow symlinks (in any component) to the final path, or None if dangling."""
        path = normalize(vpath)
        for _ in range(40):
            parts = path.strip("/").split("/")
            for i in range(1, len(parts) + 1):
                prefix = "/" + "/".join(parts[:i])
                hit = self.files.get(prefix)
                if hit and hit[0].is_symlink():
                    target = os.readlink(hit[0])
                    base = prefix.rsplit("/", 1)[0] or "/"
                    new = target if target.startswith("/") else f"{base}/{target}"
                    path = normalize(new + "/" + "/".join(parts[i:]))
                    break
            else:
                return path if path in self.files or path in self.dirs else None
        return None

    def find_program(self, name: str) -> str | None:
        """The merged-/usr path of an executable, searched like PATH."""
        if name.startswith("/"):
            return normalize(name) if self.lookup(name) else None
        for d in ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"):
            if f"{d}/{name}" in self.files:
                return f"{d}/{name}"
        return None

    def children(self, vdir: str) -> list[str]:
        """Every file or symlink below *vdir* (recursively)."""
        prefix = normalize(vdir).rstrip("/") + "/"
        return sorted(p for p in self.files if p.startswith(prefix))
