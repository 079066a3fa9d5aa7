# SPDX-License-Identifier: Apache-2.0
"""The Secure Boot chain from Debian's signed packages, and the kernel signature check.

Firmware with Microsoft's UEFI CA in db starts shim (signed by Microsoft); shim
carries Debian's CA and checks GRUB (signed by Debian); GRUB asks shim to check
the kernel (signed by Debian). The initramfs and the command line are not
checked by anyone: see doc/secure-boot.rst. The kernel's own check is the one
every builder runs, buildlib/signature.py.

The files are looked up under an *efi_root*: ``/`` when the packages are
installed, or a directory they were unpacked into with ``dpkg-deb -x``
(``./build.sh iso`` does that, to keep shim's maintainer scripts off the host).
"""

from __future__ import annotations

from pathlib import Path

from buildlib import signature
from isoimage.errors import IsoError

# name -> (path under the root, Debian package)
FILES = {
    "shim": ("usr/lib/shim/shimx64.efi.signed", "shim-signed"),
    "mokmanager": ("usr/lib/shim/mmx64.efi.signed", "shim-helpers-amd64-signed"),
    "grub": ("usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed", "grub-efi-amd64-signed"),
    "debian-ca": (signature.CA_PATH, signature.CA_PACKAGE),
}
PACKAGES = tuple(sorted({package for _, package in FILES.values()}))

# Where each file goes on the ESP. shim starts grubx64.efi (and mmx64.efi for
# MOK enrolment) from its own directory; Debian's GRUB reads its config from
# /EFI/debian on the device it was loaded from (its built-in prefix).
ESP_LAYOUT = {
    "/EFI/BOOT/BOOTX64.EFI": "shim",
    "/EFI/BOOT/grubx64.efi": "grub",
    "/EFI/BOOT/mmx64.efi": "mokmanager",
}
GRUB_CONFIG = "/EFI/debian/grub.cfg"


def find(efi_root: Path) -> dict[str, Path]:
    """The signed files under *efi_root*; one error naming every missing package."""
    found, missing = {}, []
    for name, (path, package) in FILES.items():
        candidate = efi_root / path
        if candidate.is_file():
            found[name] = candidate
        else:
            missing.append((candidate, package))
    if missing:
        raise IsoError("--secure-boot: missing " + ", ".join(
            f"{path} (package {package})" for path, package in missing),
            hint="apt-get install " + " ".join(sorted({p for _, p in missing}))
                 + ", or give --efi-root DIR where those packages are unpacked")
    return found
