# SPDX-License-Identifier: Apache-2.0
"""Another architecture's programs on the build host (buildlib/emulation.py): the
binfmt_misc line, the entry an existing registration is read from, the check program."""

from __future__ import annotations

import platform
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from buildlib import arch, emulation
from buildlib.log import BuildError

ARM64 = arch.get("arm64")
DEBIAN_ENTRY = Path("/usr/share/binfmts/qemu-aarch64")   # qemu-user-static's own
REGISTERED = """enabled
interpreter /usr/bin/qemu-aarch64-static
flags: F
offset 0
magic 7f454c460201010000000000000000000200b700
mask ffffffffffffff00fffffffffffffffffeffffff
"""


def test_register_line_is_the_standard_aarch64_one_with_the_f_flag() -> None:
    line = emulation.register_line(ARM64, Path("/usr/bin/qemu-aarch64-static"))
    assert line == (
        r":qemu-aarch64:M::\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00"
        r"\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff"
        r"\xfe\xff\xff\xff:/usr/bin/qemu-aarch64-static:F")
    # the seven fields binfmt_misc splits on ':' (every byte escaped, so none inside)
    assert len(line.split(":")) == 8
    if DEBIAN_ENTRY.exists():   # the same magic and mask as Debian's package registers
        fields = dict(l.split(None, 1) for l in DEBIAN_ENTRY.read_text().splitlines() if " " in l)
        assert line.split(":")[4:6] == [fields["magic"], fields["mask"]]


def test_an_existing_entry_is_used_only_with_the_f_flag() -> None:
    entry = emulation.parse_entry(REGISTERED)
    assert entry == emulation.Entry(True, "/usr/bin/qemu-aarch64-static", "F")
    assert emulation.refusal(entry) is None
    debian = emulation.parse_entry(REGISTERED.replace("flags: F", "flags: POCF"))
    assert emulation.refusal(debian) is None
    lazy = emulation.parse_entry(REGISTERED.replace("flags: F", "flags: "))
    assert "no F (fix-binary) flag" in (emulation.refusal(lazy) or "")
    off = emulation.parse_entry(REGISTERED.replace("enabled", "disabled", 1))
    assert emulation.refusal(off) == "it is disabled"


@pytest.mark.skipif(platform.machine() == "aarch64", reason="arm64 is native here")
def test_an_unusable_registration_is_refused_with_its_fix(tmp_path: Path) -> None:
    (tmp_path / "register").write_text("")
    (tmp_path / "qemu-aarch64").write_text(REGISTERED.replace("flags: F", "flags: P"))
    with pytest.raises(BuildError, match=r"unusable: it has no F .*echo -1 > "):
        emulation.ensure(ARM64, root=tmp_path)


def test_nothing_is_done_for_the_hosts_own_architecture(tmp_path: Path) -> None:
    host = next(a for a in arch.ARCHES.values() if a.native)
    emulation.ensure(host, root=tmp_path / "not-mounted")   # no mount, no register
    assert not (tmp_path / "not-mounted").exists()


def test_check_program_is_a_static_aarch64_executable(tmp_path: Path) -> None:
    data = emulation.check_program(ARM64)
    assert data[:20] == emulation.MAGICS["aarch64"].magic
    e_entry, e_phoff = struct.unpack_from("<QQ", data, 24)
    assert (e_phoff, e_entry & 0xFFF) == (64, 120)
    qemu = shutil.which(ARM64.emulator)
    if qemu is None:
        pytest.skip(f"{ARM64.emulator} is not installed")
    program = tmp_path / "check"
    program.write_bytes(data)
    program.chmod(0o755)
    # qemu-user run directly (no binfmt_misc needed): the instructions do what they say
    done = subprocess.run([qemu, str(program)], capture_output=True, text=True, timeout=30,
                          check=False)
    assert (done.returncode, done.stdout) == (0, emulation.SAID)
