# SPDX-License-Identifier: Apache-2.0
"""Running another architecture's programs on the build host: qemu-user via binfmt_misc.

dib and coreos build their arm64 trees by running the trees' own programs (dpkg's
maintainer scripts, apt, pip in the container build) inside chroots. On an x86_64
host the kernel hands those ELF files to ``qemu-aarch64-static`` (Debian's
``qemu-user-static``) once that is registered with binfmt_misc. :func:`ensure` is
the one place that sets it up:

* mount ``/proc/sys/fs/binfmt_misc`` when it is not (no systemd here does it);
* register ``qemu-<machine>`` with the F (fix-binary) flag when no entry of that
  name exists: the kernel opens the interpreter at registration, so a chroot
  needs no copy of it;
* run a tiny arm64 program (its bytes are below, not compiled here) in an empty
  chroot, which is what dib and mmdebstrap need to work.

The registration is the host's, for every process on it, until reboot or until
someone writes ``-1`` to the entry; x86_64 programs are not affected. An entry
registered by someone else (Debian's binfmt-support, another build) is used as it
is when it is enabled and has the F flag, and refused with the reason otherwise.
"""

from __future__ import annotations

import os
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from buildlib.arch import Arch
from buildlib.log import BuildError, run

BINFMT = Path("/proc/sys/fs/binfmt_misc")
INTERPRETERS = Path("/usr/bin")
SAID = "aarch64\n"


@dataclass(frozen=True)
class Magic:
    """binfmt_misc's match for one architecture's ELF executables."""

    magic: bytes
    mask: bytes


# ELF identification (64-bit, little endian, version 1), e_type EXEC or DYN (the
# mask's 0xfe takes 2 and 3), e_machine: the line Debian's qemu-user-static ships.
MAGICS = {
    "aarch64": Magic(
        magic=b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 8 + b"\x02\x00\xb7\x00",
        mask=b"\xff\xff\xff\xff\xff\xff\xff\x00" + b"\xff" * 8 + b"\xfe\xff\xff\xff"),
}


def escaped(data: bytes) -> str:
    r"""Bytes as binfmt_misc reads them: ``\x7f\x45...`` (every byte, so no ':' is left)."""
    return "".join(f"\\x{b:02x}" for b in data)


def register_line(arch: Arch, interpreter: Path) -> str:
    """What to write to ``register``: ``:name:M::magic:mask:interpreter:F``."""
    if arch.machine not in MAGICS:
        raise BuildError(f"no binfmt_misc magic known for {arch.machine}")
    m = MAGICS[arch.machine]
    return (f":{entry_name(arch)}:M::{escaped(m.magic)}:{escaped(m.mask)}:"
            f"{os.fspath(interpreter)}:F")


def entry_name(arch: Arch) -> str:
    """The entry's name, as Debian and mmdebstrap call it: qemu-aarch64."""
    return f"qemu-{arch.machine}"


@dataclass(frozen=True)
class Entry:
    """One registered binfmt_misc entry, as its file under binfmt_misc reads."""

    enabled: bool
    interpreter: str
    flags: str


def parse_entry(text: str) -> Entry:
    """``enabled`` / ``interpreter /usr/bin/x`` / ``flags: F`` ... of an entry file."""
    lines = text.splitlines()
    fields = dict(line.replace(":", " ", 1).split(None, 1) for line in lines[1:]
                  if len(line.replace(":", " ", 1).split(None, 1)) == 2)
    return Entry(enabled=bool(lines) and lines[0].strip() == "enabled",
                 interpreter=fields.get("interpreter", "").strip(),
                 flags=fields.get("flags", "").strip())


def refusal(entry: Entry) -> str | None:
    """Why an existing entry cannot run programs in chroots (None: it can)."""
    if not entry.enabled:
        return "it is disabled"
    if "F" not in entry.flags:
        return (f"it has no F (fix-binary) flag (flags: {entry.flags or 'none'}), so a "
                f"chroot would need {entry.interpreter} inside it")
    return None


def check_program(arch: Arch) -> bytes:
    """A static aarch64 ELF that writes ``aarch64\\n`` and exits 0: 8 instructions,
    hand-assembled (nothing is compiled on the build host)."""
    if arch.machine != "aarch64":
        raise BuildError(f"no check program for {arch.machine}")
    base, code_at = 0x400000, 64 + 56
    code = [0xD2800020,   # mov x0, #1             (stdout)
            0x100000E1,   # adr x1, .+28            (the text after the code)
            0xD2800102,   # mov x2, #8              (its length)
            0xD2800808,   # mov x8, #64             (write)
            0xD4000001,   # svc #0
            0xD2800000,   # mov x0, #0
            0xD2800BA8,   # mov x8, #93             (exit)
            0xD4000001]   # svc #0
    body = struct.pack(f"<{len(code)}I", *code) + SAID.encode()
    size = code_at + len(body)
    header = struct.pack("<16sHHIQQQIHHHHHH", b"\x7fELF\x02\x01\x01" + b"\x00" * 9,
                         2, 183, 1, base + code_at, 64, 0, 0, 64, 56, 1, 0, 0, 0)
    program = struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, size, size, 0x1000)
    return header + program + body


def ensure(arch: Arch, say: Callable[[str], None] = lambda _line: None,
           root: Path = BINFMT, interpreters: Path = INTERPRETERS) -> None:
    """Make *arch*'s programs run here, in chroots too; BuildError says why not.

    Nothing to do for the host's own architecture.
    """
    if arch.native:
        return
    interpreter = interpreters / arch.emulator
    if not (root / "register").exists():
        if os.geteuid() != 0:
            raise BuildError(f"{root} is not mounted and mounting it needs root")
        run(["mount", "-t", "binfmt_misc", "binfmt_misc", root])
        say(f"mounted {root}")
    entry_file = root / entry_name(arch)
    if not entry_file.exists():
        if not interpreter.exists():
            raise BuildError(f"{interpreter} is missing (apt-get install qemu-user-static)")
        try:
            (root / "register").write_text(register_line(arch, interpreter))
        except OSError as exc:
            if not entry_file.exists():   # not someone else registering it just now
                raise BuildError(f"cannot register {interpreter} with binfmt_misc "
                                 f"({root / 'register'}: {exc.strerror})") from None
        else:
            say(f"registered {interpreter} for {arch.machine} programs (binfmt_misc, F flag)")
    entry = parse_entry(entry_file.read_text())
    why = refusal(entry)
    if why is not None:
        raise BuildError(f"{entry_file} is registered but unusable: {why}; remove it "
                         f"(echo -1 > {entry_file}) to let the build register its own")
    check_in_chroot(arch, entry)


def check_in_chroot(arch: Arch, entry: Entry) -> None:
    """Run the check program as the only file of a chroot."""
    with tempfile.TemporaryDirectory(prefix="lean-ipa-binfmt.") as tmp:
        program = Path(tmp) / "check"
        program.write_bytes(check_program(arch))
        program.chmod(0o755)
        try:
            said = run(["chroot", tmp, "/check"], timeout=60)
        except BuildError as exc:
            raise BuildError(f"an {arch.machine} program does not run in a chroot through "
                             f"{entry.interpreter} (binfmt_misc): {exc}") from None
    if said != SAID:
        raise BuildError(f"the {arch.machine} check program said {said!r} through "
                         f"{entry.interpreter}, not {SAID!r}")
