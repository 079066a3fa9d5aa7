# SPDX-License-Identifier: Apache-2.0
"""The image root being assembled (mkinitcpio's shape, in Python).

Files come from the unpacked Debian packages (:class:`PackageTree`) by their
Debian path, or from this checkout. The root uses the merged-/usr layout:
``/bin``, ``/sbin``, ``/lib`` and ``/lib64`` are symlinks into ``/usr``.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable, Iterable
from pathlib import Path

from tinyipa import elf
from tinyipa.cpio import Entry
from tinyipa.debs import MERGED, Package, PackageTree, normalize
from tinyipa.log import Log

LIBDIRS = ("/usr/lib/{triplet}", "/usr/lib", "/usr/lib64")


class Root:
    def __init__(self, path: Path, tree: PackageTree, log: Log,
                 stubs: Iterable[str] = (), triplet: str = "x86_64-linux-gnu") -> None:
        self.path = path
        # where the loader looks for libraries (the multiarch directory first)
        self.libdirs = tuple(d.format(triplet=triplet) for d in LIBDIRS)
        self.tree = tree
        self.log = log
        # sonames replaced by generated stubs (tinyipa/stub.py): never copied,
        # their dependencies never followed; soname -> the files needing it
        self.stub_sonames = frozenset(stubs)
        self.stubbed: dict[str, set[str]] = {}
        self.used: set[Package] = set()
        self.missing_libs: set[str] = set()
        self.nodes: list[Entry] = []
        self.generated: set[str] = set()   # written by the build, not from a package
        if path.exists():
            shutil.rmtree(path)
        for d in ("usr/bin", "usr/sbin", "usr/lib", "usr/lib64", "dev", "proc", "sys",
                  "run", "tmp", "etc", "root", "var/log", "var/lib", "mnt"):
            (path / d).mkdir(parents=True, exist_ok=True)
        (path / "tmp").chmod(0o1777)
        (path / "root").chmod(0o700)
        for link, target in MERGED.items():
            os.symlink(target, path / link)
        self.add_node("/dev/console", stat.S_IFCHR | 0o600, 5, 1)
        self.add_node("/dev/null", stat.S_IFCHR | 0o666, 1, 3)

    # -- basic entries --------------------------------------------------------

    def dest(self, vpath: str) -> Path:
        return self.path / normalize(vpath).lstrip("/")

    def exists(self, vpath: str) -> bool:
        return os.path.lexists(self.dest(vpath))

    def add_node(self, vpath: str, mode: int, major: int, minor: int) -> None:
        self.nodes.append(Entry(normalize(vpath).lstrip("/"), mode, b"", (major, minor)))

    def add_symlink(self, vpath: str, target: str) -> None:
        dest = self.dest(vpath)
        if os.path.lexists(dest):
            return
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, dest)

    def write_file(self, vpath: str, content: str | bytes, mode: int = 0o644) -> None:
        dest = self.dest(vpath)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if os.path.lexists(dest):
            dest.unlink()
        dest.write_bytes(content.encode() if isinstance(content, str) else content)
        dest.chmod(mode)
        self.generated.add(normalize(vpath).lstrip("/"))

    def add_host_file(self, src: Path, vpath: str, mode: int | None = None) -> None:
        """A file from this checkout (or the build), not from a package."""
        self.write_file(vpath, src.read_bytes(), mode if mode is not None
                        else stat.S_IMODE(src.stat().st_mode))

    def add_file(self, vpath: str, *, libs: bool = True) -> str:
        """A file from the packages, with the symlinks leading to it.

        Returns the merged path it ended at. ELF files get their libraries.
        """
        path = normalize(vpath)
        for _ in range(40):
            hit = self.tree.lookup(path)
            if hit is None:
                resolved = self.tree.resolve(path)
                if resolved is None or resolved == path:
                    raise FileNotFoundError(f"no package provides {vpath}")
                path = resolved
                continue
            real, pkg = hit
            dest = self.dest(path)
            self.used.add(pkg)
            if real.is_symlink():
                target = os.readlink(real)
                self.add_symlink(path, target)
                base = path.rsplit("/", 1)[0] or "/"
                path = normalize(target if target.startswith("/") else f"{base}/{target}")
                continue
            if not os.path.lexists(dest):
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(real, dest, follow_symlinks=False)
                if libs:
                    self.add_libraries(dest)
            return path
        raise RuntimeError(f"symlink loop at {vpath}")

    def add_binary(self, name: str) -> str:
        """An executable by name (searched like PATH) or path, with its libraries."""
        path = self.tree.find_program(name)
        if path is None:
            raise FileNotFoundError(f"no package provides the program {name}")
        return self.add_file(path)

    def add_tree(self, vdir: str, exclude: Callable[[str], bool] = lambda p: False,
                 libs: bool = False) -> int:
        """Everything below *vdir* that *exclude* does not reject."""
        count = 0
        for vpath in self.tree.children(vdir):
            if exclude(vpath):
                continue
            try:
                self.add_file(vpath, libs=libs)
            except FileNotFoundError:
                self.log.info(f"skipping dangling {vpath}")
                continue
            count += 1
        return count

    # -- libraries ------------------------------------------------------------

    def _find_library(self, soname: str, runpath: tuple[str, ...], origin: str) -> str | None:
        """Where *soname* comes from: a package path, None if already in the
        root (e.g. a wheel's bundled ``.libs``), "" if nowhere."""
        dirs = [d.replace("$ORIGIN", origin).replace("${ORIGIN}", origin) for d in runpath]
        for d in dirs:
            if os.path.lexists(self.dest(f"{d}/{soname}")):
                return None
        for d in dirs + list(self.libdirs):
            if self.tree.lookup(f"{d}/{soname}") or self.tree.resolve(f"{d}/{soname}"):
                return f"{d}/{soname}"
        return None if any(os.path.lexists(self.dest(f"{d}/{soname}"))
                           for d in self.libdirs) else ""

    def add_libraries(self, dest: Path) -> None:
        """The DT_NEEDED closure of one ELF file (the 'ldd closure')."""
        info = elf.read_dynamic(dest)
        if info is None:
            return
        if info.interpreter:
            self.add_file(info.interpreter, libs=False)
        origin = "/" + str(dest.parent.relative_to(self.path))
        for soname in info.needed:
            if soname in self.stub_sonames:
                self.stubbed.setdefault(soname, set()).add(f"{origin}/{dest.name}")
                continue
            found = self._find_library(soname, info.runpath, origin)
            if found is None:
                continue
            if found == "":
                self.missing_libs.add(f"{soname} (for {origin}/{dest.name})")
                continue
            if not self.exists(found):
                self.add_file(found)

    def add_all_libraries(self) -> None:
        """Resolve libraries for every ELF file in the root (e.g. from wheels)."""
        for dirpath, _dirs, files in os.walk(self.path):
            for name in files:
                path = Path(dirpath) / name
                if not path.is_symlink() and elf.is_elf(path):
                    self.add_libraries(path)

    # -- kernel modules ---------------------------------------------------------

    def module_index(self, kver: str) -> dict[str, str]:
        """Module name (with ``_``) -> merged path, for the packaged kernel."""
        index: dict[str, str] = {}
        for vpath in self.tree.children(f"/usr/lib/modules/{kver}/kernel"):
            base = vpath.rsplit("/", 1)[1]
            for suffix in (".ko", ".ko.xz", ".ko.zst", ".ko.gz"):
                if base.endswith(suffix):
                    index[base.removesuffix(suffix).replace("-", "_")] = vpath
        return index

    def add_module(self, name: str, kver: str, index: dict[str, str],
                   builtin: set[str]) -> list[str]:
        """A kernel module and its modinfo dependencies; returns the names added."""
        todo, added = [(name.replace("-", "_"), True)], []
        while todo:
            mod, required = todo.pop()
            if mod in builtin:
                continue
            vpath = index.get(mod) or index.get(f"{mod}_generic") or index.get(f"{mod}_intel")
            if vpath is None:
                if required:
                    raise FileNotFoundError(f"kernel {kver} has no module {mod}")
                self.log.info(f"soft dependency {mod} not found; skipped")
                continue
            if self.exists(vpath):
                continue
            self.add_file(vpath, libs=False)
            added.append(mod)
            hard, soft = elf.module_dependencies(elf.read_modinfo(self.dest(vpath)))
            todo += [(d.replace("-", "_"), True) for d in hard]
            todo += [(d.replace("-", "_"), False) for d in soft]
        return added
