# SPDX-License-Identifier: Apache-2.0
"""Kernel and a pruned module tree for the coreos host, from Debian's linux-image.

The Debian kernel ships ~2,500 modules (~380 MB); a deploy ramdisk needs storage,
network, filesystem and a few platform drivers. Selection is by path prefix under
``kernel/`` plus the dependency closure from ``modules.dep``; ``depmod`` then
rebuilds the indexes for the pruned tree.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from buildlib import modules, outputs
from coreos.runner import BuildError, Runner

# The selection is buildlib/kernel-modules.toml's: whole trees (prefixes relative to
# lib/modules/<version>/, [coreos] keep/exclude) and every image's module names.
_SELECTION = modules.selection()
MODULE_PREFIXES: tuple[str, ...] = _SELECTION.coreos_keep
MODULE_EXCLUDES: tuple[str, ...] = _SELECTION.coreos_exclude
MODULE_NAMES: tuple[str, ...] = _SELECTION.names


def parse_modules_dep(text: str) -> dict[str, tuple[str, ...]]:
    """``modules.dep`` lines (``a.ko: b.ko c.ko``) as module -> its dependencies."""
    deps: dict[str, tuple[str, ...]] = {}
    for line in text.splitlines():
        if ":" not in line:
            continue
        module, _, rest = line.partition(":")
        deps[module.strip()] = tuple(rest.split())
    return deps


def module_name(path: str) -> str:
    """kernel/drivers/net/bonding/bonding.ko(.zst) -> bonding (dashes as underscores)."""
    return path.rsplit("/", 1)[-1].split(".ko")[0].replace("-", "_")


def select_modules(deps: Mapping[str, Iterable[str]], prefixes: Iterable[str],
                   excludes: Iterable[str] = (), names: Iterable[str] = ()) -> set[str]:
    """Modules whose path starts with a prefix (and no exclude), those named, plus
    what they need."""
    prefixes, excludes = tuple(prefixes), tuple(excludes)
    named = {n.replace("-", "_") for n in names}
    wanted = {m for m in deps if (m.startswith(prefixes) and not m.startswith(excludes))
              or module_name(m) in named}
    todo = list(wanted)
    while todo:
        for dep in deps.get(todo.pop(), ()):
            if dep not in wanted:
                wanted.add(dep)
                todo.append(dep)
    return wanted


def image_package(names: Iterable[str], debian_arch: str) -> str | None:
    """Of the packages apt plans for linux-image-<arch>, the kernel package itself:
    linux-image-6.1.0-28-arm64 (the signed one; not -unsigned, not the meta package)."""
    pattern = re.compile(rf"linux-image-\d\S*-{re.escape(debian_arch)}")
    return next((n for n in names if pattern.fullmatch(n)), None)


def install_kernel(runner: Runner, deb: Path, root: Path, kernel_out: Path,
                   extra_modules: Iterable[str] = (),
                   names: Iterable[str] = MODULE_NAMES) -> str:
    """Unpack a linux-image .deb: vmlinuz to ``kernel_out``, pruned modules into ``root``.

    *names* are the modules kept outside the kept trees (the architecture's
    selection: buildlib/modules.py). Returns the kernel version (the modules
    directory name).
    """
    with tempfile.TemporaryDirectory(prefix="lean-ipa-kernel-") as tmp:
        unpacked = Path(tmp)
        runner.run(["dpkg-deb", "-x", deb, unpacked])
        versions = sorted(p.name for p in (unpacked / "lib/modules").iterdir())
        if len(versions) != 1:
            raise BuildError(f"{deb.name}: expected one module tree, found {versions}")
        version = versions[0]
        outputs.write_kernel(unpacked / f"boot/vmlinuz-{version}", kernel_out)
        src = unpacked / "lib/modules" / version
        dest = root / "usr/lib/modules" / version
        # The package has no indexes (its postinst makes them): make modules.dep.
        runner.run(["depmod", "--basedir", unpacked, version])
        deps = parse_modules_dep((src / "modules.dep").read_text())
        keep = select_modules(deps, MODULE_PREFIXES, MODULE_EXCLUDES,
                              (*names, *extra_modules))
        found = {module_name(m) for m in keep}
        if (src / "modules.builtin").exists():
            found |= {module_name(m) for m in (src / "modules.builtin").read_text().split()}
        unknown = [m for m in extra_modules if m.replace("-", "_") not in found]
        if unknown:
            raise BuildError(f"--extra-modules: no module {', '.join(unknown)} in {deb.name}")
        for module in sorted(keep):
            (dest / module).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / module, dest / module)
        # The root lives in RAM (tmpfs, at most half of it): zstd-compressed modules
        # (kmod decompresses them) take ~70 MB less there, which lowers the RAM floor.
        runner.run(["zstd", "-q", "--rm", "-T0", "-9", *(dest / m for m in sorted(keep))])
        for name in ("modules.order", "modules.builtin", "modules.builtin.modinfo"):
            if (src / name).exists():
                shutil.copy2(src / name, dest / name)
        runner.note(f"kernel {version}: kept {len(keep)} of {len(deps)} modules")
        runner.run(["depmod", "--basedir", root, version])
    return version
