# SPDX-License-Identifier: Apache-2.0
"""Pack a kernel + initramfs into a BIOS + UEFI bootable ISO for virtual media."""
