# SPDX-License-Identifier: Apache-2.0
"""The CPU architectures images are built for, and what each is called where.

``--arch`` names one (``x86_64``, or ``arm64``; ``amd64`` and ``aarch64`` are
aliases). An image for another architecture than the build host's is made of
that architecture's Debian packages and wheels, unpacked and copied: nothing is
compiled for it, and a program of the image runs on the host only through
qemu-user (:attr:`Arch.emulator`), never natively.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass

DEFAULT = "x86_64"


@dataclass(frozen=True)
class Arch:
    name: str        # ours: --arch, output names, the manifest's "input arch"
    debian: str      # dpkg's: amd64, arm64
    machine: str     # the kernel's (uname -m, the inventory's cpu.architecture)
    triplet: str     # the multiarch library directory: /usr/lib/<triplet>
    wheel: str       # the manylinux platform tags' suffix
    emulator: str    # the qemu-user program running its binaries on another host
    efi: str         # UEFI's removable-media boot file: EFI/BOOT/BOOT<efi>.EFI
    grub: str        # GRUB's platform directory for UEFI

    @property
    def suffix(self) -> str:
        """What output names carry: nothing for the default, ``-arm64`` otherwise."""
        return "" if self.name == DEFAULT else f"-{self.name}"

    @property
    def native(self) -> bool:
        """The build host runs this architecture's programs itself."""
        return platform.machine() == self.machine

    def wheel_platforms(self) -> list[str]:
        """pip ``--platform`` tags for glibc 2.36 (bookworm) and older."""
        return [f"manylinux2014_{self.wheel}"] + [f"manylinux_2_{n}_{self.wheel}"
                                                  for n in range(17, 37)]


ARCHES = {
    "x86_64": Arch("x86_64", "amd64", "x86_64", "x86_64-linux-gnu", "x86_64",
                   "qemu-x86_64-static", "X64", "x86_64-efi"),
    "arm64": Arch("arm64", "arm64", "aarch64", "aarch64-linux-gnu", "aarch64",
                  "qemu-aarch64-static", "AA64", "arm64-efi"),
}
ALIASES = {"amd64": "x86_64", "aarch64": "arm64"}


def get(name: str) -> Arch:
    """The architecture called *name* (or an alias); KeyError names the known ones."""
    key = ALIASES.get(name, name)
    if key not in ARCHES:
        raise KeyError(f"unknown architecture {name!r} (known: "
                       f"{', '.join(sorted([*ARCHES, *ALIASES]))})")
    return ARCHES[key]
