# SPDX-License-Identifier: Apache-2.0
"""The kernel command line and the boot menu configs (Jinja2 templates in ``iso/templates``)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from isoimage.errors import IsoError

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"

# Always on the command line: the agent only looks for parameters.txt on a
# virtual floppy/USB (label ir-vfd-dev) and for config on the ISO with it.
BOOT_METHOD = "boot_method=vmedia"

# Where things sit inside the ISO / ESP. Ironic harvests the first files named
# efiboot.img and grub.cfg from a deploy ISO; EFI/BOOT/grub.cfg is also the
# default of Ironic's [DEFAULT]grub_config_path.
GRUB_CONFIG_DIR = "/EFI/BOOT"
GRUB_CONFIG_PATH = "/EFI/BOOT/grub.cfg"
EFI_BOOT_LOADER = "/EFI/BOOT/BOOTX64.EFI"
ESP_IN_ISO = "boot/grub/efiboot.img"

DEFAULT_TIMEOUT = 1
DEFAULT_TITLE = "Deploy ramdisk (virtual media)"

_GRUB_PLAIN = re.compile(r"[A-Za-z0-9_=,./:@+%-]+")


def split_cmdline(text: str) -> list[str]:
    """Split a kernel command line the way Linux does: on blanks, "double quotes" group.

    The returned words have their quotes removed (``k="a b"`` gives ``k=a b``).
    Characters no boot loader can pass through both isolinux and GRUB are refused.
    """
    for bad, name in (("\n", "newline"), ("\r", "carriage return"), ("'", "single quote"),
                      ("\\", "backslash")):
        if bad in text:
            raise IsoError(f"--append: a {name} cannot be passed on the kernel command line")
    if any(ord(c) < 0x20 and c != "\t" for c in text):
        raise IsoError("--append: control characters cannot be passed on the kernel command line")
    if text.count('"') % 2:
        raise IsoError(f"--append: unbalanced double quote in {text!r}")
    words: list[str] = []
    current: list[str] = []
    quoted = False
    started = False
    for char in text:
        if char == '"':
            quoted = not quoted
            started = True
        elif char in " \t" and not quoted:
            if started:
                words.append("".join(current))
            current, started = [], False
        else:
            current.append(char)
            started = True
    if started:
        words.append("".join(current))
    return words


def kernel_args(append: str) -> list[str]:
    """``boot_method=vmedia`` followed by the words of *append* (without repeating it)."""
    words = split_cmdline(append)
    for word in words:
        if word.startswith("boot_method=") and word != BOOT_METHOD:
            raise IsoError(f"--append: {word!r} conflicts with {BOOT_METHOD}, "
                           "which this ISO always sets")
    return [BOOT_METHOD] + [word for word in words if word != BOOT_METHOD]


def quote_for_kernel(word: str) -> str:
    """A word as isolinux passes it verbatim: quote the value if it has blanks."""
    if " " not in word and "\t" not in word:
        return word
    key, sep, value = word.partition("=")
    return f'{key}="{value}"' if sep else f'"{word}"'


def quote_for_grub(word: str) -> str:
    """A word for GRUB's script lexer, which would otherwise expand $ and split on blanks.

    GRUB itself re-quotes a word with blanks as "k=a b" for the kernel.
    """
    return word if _GRUB_PLAIN.fullmatch(word) else f"'{word}'"


def _render(name: str, **context: Any) -> str:
    try:
        import jinja2
    except ImportError:
        raise IsoError("the Python module jinja2 is missing",
                       hint="apt-get install python3-jinja2, or pip install Jinja2") from None
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             autoescape=False)
    return env.get_template(name).render(**context)


def isolinux_cfg(args: Iterable[str], timeout: int = DEFAULT_TIMEOUT) -> str:
    return _render("isolinux.cfg.j2", kernel_args=[quote_for_kernel(a) for a in args],
                   timeout=timeout)


def grub_cfg(args: Iterable[str], timeout: int = DEFAULT_TIMEOUT,
             title: str = DEFAULT_TITLE) -> str:
    return _render("grub.cfg.j2", grub_args=[quote_for_grub(a) for a in args], timeout=timeout,
                   title=title, esp_path=EFI_BOOT_LOADER, config_path=GRUB_CONFIG_PATH)


def grub_early_cfg() -> str:
    """The config built into the GRUB EFI image: find and load GRUB_CONFIG_PATH."""
    return _render("grub-early.cfg.j2", config_path=GRUB_CONFIG_PATH,
                   config_dir=GRUB_CONFIG_DIR)
