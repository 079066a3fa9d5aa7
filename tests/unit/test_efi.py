# SPDX-License-Identifier: Apache-2.0
"""What install_bootloader says when mtools cannot read an ESP.

The stderr samples are what tinyipa's mdir printed on a virtio disk under OVMF.
"""

from __future__ import annotations

from ironic_python_agent import efi, run

MDIR = ["mdir", "-/", "-b", "-i", "/dev/vda@@1048576", "::/"]


def test_every_line_of_mtools_stderr_is_kept() -> None:
    exc = run.CommandError(MDIR, 1, "", "init :: non DOS media\nCannot initialize '::'\n")
    assert str(exc).endswith("Cannot initialize '::'")  # the tail alone hides the cause
    text = efi.mtools_failure(exc)
    assert text == ("mdir -/ -b -i /dev/vda@@1048576 ::/: exit code 1: "
                    "init :: non DOS media; Cannot initialize '::'")


def test_missing_code_page_module_is_named() -> None:
    exc = run.CommandError(MDIR, 1, "", "Error converting to codepage 850 Invalid argument\n"
                           "Error setting code page\nCannot initialize '::'\n")
    text = efi.mtools_failure(exc)
    assert "Error converting to codepage 850" in text
    assert "IBM850 iconv module (gconv) is missing" in text


def test_missing_program() -> None:
    exc = run.CommandError(MDIR, None, "", "mdir: command not found")
    assert efi.mtools_failure(exc).startswith("mdir -/ -b -i /dev/vda@@1048576 ::/: not found")
