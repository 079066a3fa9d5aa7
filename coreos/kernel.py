# SPDX-License-Identifier: Apache-2.0
"""Kernel and a pruned module tree for the coreos host, from Debian's linux-image.

The Debian kernel ships ~2,500 modules (~380 MB); a deploy ramdisk needs storage,
network, filesystem and a few platform drivers. Selection is by path prefix under
``kernel/`` plus the dependency closure from ``modules.dep``; ``depmod`` then
rebuilds the indexes for the pruned tree.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from coreos.runner import BuildError, Runner

# Prefixes (relative to lib/modules/<version>/) of the modules the host keeps.
# Storage and network drivers for real servers, the filesystems the agent and the
# container mount need, IPMI, and the libraries they pull in.
MODULE_PREFIXES: tuple[str, ...] = (
    "kernel/arch/x86/crypto/",
    "kernel/block/",
    "kernel/crypto/",
    "kernel/drivers/acpi/",
    "kernel/drivers/ata/",
    "kernel/drivers/block/",
    "kernel/drivers/cdrom/",
    "kernel/drivers/char/ipmi/",
    "kernel/drivers/char/hw_random/",
    "kernel/drivers/dca/",
    "kernel/drivers/firmware/",
    "kernel/drivers/hid/",
    "kernel/drivers/input/keyboard/",
    "kernel/drivers/md/",
    "kernel/drivers/message/",
    "kernel/drivers/mmc/",
    "kernel/drivers/net/bonding/",
    "kernel/drivers/net/ethernet/",
    "kernel/drivers/net/mdio",
    "kernel/drivers/net/net_failover.ko",
    "kernel/drivers/net/pcs/",
    "kernel/drivers/net/phy/",
    "kernel/drivers/net/virtio_net.ko",
    "kernel/drivers/nvme/",
    "kernel/drivers/pci/",
    "kernel/drivers/ptp/",
    "kernel/drivers/scsi/",
    "kernel/drivers/usb/",
    "kernel/drivers/virtio/",
    "kernel/fs/efivarfs/",
    "kernel/fs/ext4/",
    "kernel/fs/fat/",
    "kernel/fs/isofs/",
    "kernel/fs/jbd2/",
    "kernel/fs/mbcache.ko",
    "kernel/fs/nls/",
    "kernel/fs/overlayfs/",
    "kernel/fs/squashfs/",
    "kernel/fs/xfs/",
    "kernel/lib/",
    "kernel/net/8021q/",
    "kernel/net/802/",
    "kernel/net/llc/",
    "kernel/net/packet/",
)

# Big trees under the prefixes above that a deploy ramdisk never uses.
MODULE_EXCLUDES: tuple[str, ...] = (
    "kernel/drivers/usb/gadget/",
    "kernel/drivers/usb/serial/",
    "kernel/drivers/usb/misc/",
    "kernel/drivers/usb/typec/",
    "kernel/drivers/scsi/fcoe/",
    "kernel/drivers/net/ethernet/wiznet/",
)


def parse_modules_dep(text: str) -> dict[str, tuple[str, ...]]:
    """``modules.dep`` lines (``a.ko: b.ko c.ko``) as module -> its dependencies."""
    deps: dict[str, tuple[str, ...]] = {}
    for line in text.splitlines():
        if ":" not in line:
            continue
        module, _, rest = line.partition(":")
        deps[module.strip()] = tuple(rest.split())
    return deps


def select_modules(deps: Mapping[str, Iterable[str]], prefixes: Iterable[str],
                   excludes: Iterable[str] = ()) -> set[str]:
    """Modules whose path starts with a prefix (and no exclude), plus what they need."""
    prefixes, excludes = tuple(prefixes), tuple(excludes)
    wanted = {m for m in deps if m.startswith(prefixes) and not m.startswith(excludes)}
    todo = list(wanted)
    while todo:
        for dep in deps.get(todo.pop(), ()):
            if dep not in wanted:
                wanted.add(dep)
                todo.append(dep)
    return wanted


def install_kernel(runner: Runner, deb: Path, root: Path, kernel_out: Path) -> str:
    """Unpack a linux-image .deb: vmlinuz to ``kernel_out``, pruned modules into ``root``.

    Returns the kernel version (the modules directory name).
    """
    with tempfile.TemporaryDirectory(prefix="lean-ipa-kernel-") as tmp:
        unpacked = Path(tmp)
        runner.run(["dpkg-deb", "-x", deb, unpacked])
        versions = sorted(p.name for p in (unpacked / "lib/modules").iterdir())
        if len(versions) != 1:
            raise BuildError(f"{deb.name}: expected one module tree, found {versions}")
        version = versions[0]
        shutil.copyfile(unpacked / f"boot/vmlinuz-{version}", kernel_out)
        src = unpacked / "lib/modules" / version
        dest = root / "usr/lib/modules" / version
        # The package has no indexes (its postinst makes them): make modules.dep.
        runner.run(["depmod", "--basedir", unpacked, version])
        deps = parse_modules_dep((src / "modules.dep").read_text())
        keep = select_modules(deps, MODULE_PREFIXES, MODULE_EXCLUDES)
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
