# SPDX-License-Identifier: Apache-2.0
"""iso-image-create: the kernel command line, the Jinja2 boot configs and the magic checks."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(TOP / "iso"), str(TOP)]  # isoimage, and the buildlib it uses

from isoimage import bootconfig  # noqa: E402
from isoimage import esp  # noqa: E402
from isoimage import magic  # noqa: E402
from isoimage.errors import IsoError  # noqa: E402


def bzimage_head() -> bytes:
    head = bytearray(1024)
    head[0:2] = b"MZ"
    head[0x1FE:0x200] = b"\x55\xaa"
    head[0x202:0x206] = b"HdrS"
    return bytes(head)


def test_split_cmdline_like_linux() -> None:
    assert bootconfig.split_cmdline('  a=1\tb="x y"  "c d" e= ') == ["a=1", "b=x y", "c d", "e="]
    assert bootconfig.split_cmdline("") == []


@pytest.mark.parametrize("text, words", [
    ("a='x'", "single quote"),
    ("a=\\x", "backslash"),
    ('a="x', "unbalanced double quote"),
    ("a=1\nb=2", "newline"),
])
def test_split_cmdline_refuses_what_boot_loaders_cannot_pass(text: str, words: str) -> None:
    with pytest.raises(IsoError, match=words):
        bootconfig.split_cmdline(text)


def test_boot_method_vmedia_always_first_and_once() -> None:
    assert bootconfig.kernel_args("") == ["boot_method=vmedia"]
    assert bootconfig.kernel_args("ipa-insecure=1 boot_method=vmedia console=ttyS0") == [
        "boot_method=vmedia", "ipa-insecure=1", "console=ttyS0"]


def test_other_boot_method_is_refused() -> None:
    with pytest.raises(IsoError, match="boot_method=pxe"):
        bootconfig.kernel_args("boot_method=pxe")


def test_isolinux_cfg_boots_vmlinuz_with_initrd_and_args() -> None:
    text = bootconfig.isolinux_cfg(bootconfig.kernel_args(
        'ipa-api-url=http://10.0.2.2:6385 sshkey="ssh-ed25519 AAAA me"'), timeout=2)
    lines = [line.strip() for line in text.splitlines()]
    assert "DEFAULT boot" in lines
    assert "TIMEOUT 20" in lines
    assert "KERNEL /vmlinuz" in lines
    assert ('APPEND initrd=/initrd boot_method=vmedia ipa-api-url=http://10.0.2.2:6385 '
            'sshkey="ssh-ed25519 AAAA me" --') in lines


def test_grub_cfg_quotes_what_grub_would_expand() -> None:
    text = bootconfig.grub_cfg(bootconfig.kernel_args('a=$b c="d e" ipa-insecure=1'), timeout=3)
    lines = [line.strip() for line in text.splitlines()]
    assert "set timeout=3" in lines
    assert "linux /vmlinuz boot_method=vmedia 'a=$b' 'c=d e' ipa-insecure=1 --" in lines
    assert "initrd /initrd" in lines


def test_grub_early_cfg_finds_the_menu_on_the_iso() -> None:
    text = bootconfig.grub_early_cfg()
    assert "search --no-floppy --set=root --file /EFI/BOOT/grub.cfg" in text
    assert "configfile $prefix/grub.cfg" in text
    assert "{{" not in text and "{%" not in text


def test_esp_is_at_least_4_mib_in_whole_mib() -> None:
    assert esp.esp_size_kib(1_500_000) == 4096
    assert esp.esp_size_kib(5 * 2**20) == 6144


def test_kernel_magic() -> None:
    assert magic.describe_kernel(bzimage_head()) is None
    assert "swapped" in (magic.describe_kernel(b"\x1f\x8b" + bytes(1000)) or "")
    assert "HdrS" in (magic.describe_kernel(b"<html>" + bytes(1000)) or "")
    assert "too short" in (magic.describe_kernel(b"") or "")


@pytest.mark.parametrize("head, name", [
    (b"070701000000", "cpio (newc)"),
    (b"\x1f\x8b\x08\x00", "gzip"),
    (b"\xfd7zXZ\x00\x00", "xz"),
    (b"\x28\xb5\x2f\xfd\x00", "zstd"),
])
def test_initrd_magic(head: bytes, name: str) -> None:
    assert magic.initrd_format(head) == name
    assert magic.describe_initrd(head) is None


def test_initrd_magic_refuses_kernel_and_garbage() -> None:
    assert "swapped" in (magic.describe_initrd(bzimage_head()) or "")
    assert "not a cpio" in (magic.describe_initrd(b"#!/bin/sh\n") or "")
    assert magic.describe_initrd(b"") == "empty file"


def test_arm64_kernel_check() -> None:
    import gzip

    from isoimage import arm64

    image = bytearray(1024)
    image[56:60] = b"ARM\x64"
    assert arm64.describe_kernel(bytes(image)) is None
    assert arm64.describe_kernel(gzip.compress(bytes(image) * 8)[:1024]) is None
    bz = bytearray(1024)
    bz[0x1FE:0x200], bz[0x202:0x206] = b"\x55\xaa", b"HdrS"
    assert "x86 bzImage, not an arm64 kernel" in (arm64.describe_kernel(bytes(bz)) or "")
    assert "no arm64 Image header" in (arm64.describe_kernel(b"<html>" + bytes(100)) or "")
    assert "too short" in (arm64.describe_kernel(b"MZ") or "")
