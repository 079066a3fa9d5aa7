# SPDX-License-Identifier: Apache-2.0
"""The tinyipa builder's pieces: ELF reading, cpio, the package view, the root."""

from __future__ import annotations

import os
import shutil
import stat
import struct
import subprocess
from pathlib import Path

import pytest

from tinyipa import cpio, elf
from tinyipa.__main__ import _keys, _words
from tinyipa.build import segment_of
from tinyipa.debs import Package, PackageTree, normalize
from tinyipa.log import BuildError, Log
from tinyipa.root import Root

TINYIPA = Path(__file__).resolve().parents[2] / "tinyipa"


def test_normalize_merges_usr() -> None:
    assert normalize("/bin/sh") == "/usr/bin/sh"
    assert normalize("/lib64/ld-linux-x86-64.so.2") == "/usr/lib64/ld-linux-x86-64.so.2"
    assert normalize("/usr/lib/../lib/./x.so") == "/usr/lib/x.so"
    assert normalize("/etc/udev/") == "/etc/udev"


def test_cpio_round_trip_over_several_archives() -> None:
    first = [cpio.Entry("dev/console", stat.S_IFCHR | 0o600, b"", (5, 1)),
             cpio.Entry("usr", stat.S_IFDIR | 0o755),
             cpio.Entry("usr/hello", stat.S_IFREG | 0o755, b"#!/bin/sh\necho hi\n")]
    second = [cpio.Entry("bin", stat.S_IFLNK | 0o777, b"usr/bin"),
              cpio.Entry("odd", stat.S_IFREG | 0o644, b"12345")]
    data = (cpio.archive(first, mtime=0) + b"\0" * 4
            + cpio.archive(second, mtime=0, first_ino=1 << 20))
    assert len(cpio.archive(first, mtime=0)) % 4 == 0
    assert list(cpio.read_entries(data)) == first + second


def test_cpio_archive_is_readable_by_gnu_cpio(tmp_path: Path) -> None:
    entries = [cpio.Entry("a", stat.S_IFDIR | 0o755),
               cpio.Entry("a/b.txt", stat.S_IFREG | 0o640, b"payload")]
    listing = subprocess.run(["cpio", "-itv", "--quiet"], input=cpio.archive(entries, mtime=0),
                             capture_output=True, check=True).stdout.decode()
    assert "a/b.txt" in listing and "-rw-r-----" in listing


def test_parse_dynamic_of_a_host_program() -> None:
    info = elf.read_dynamic(Path(shutil.which("ls") or "/bin/ls"))
    assert info is not None
    assert "libc.so.6" in info.needed
    assert info.interpreter and info.interpreter.endswith("ld-linux-x86-64.so.2")
    assert elf.parse_dynamic(b"#!/bin/sh\n" + b"\0" * 64) is None


def fake_module(modinfo: bytes) -> bytes:
    """A minimal ELF64 relocatable file with a .modinfo section."""
    shstrtab = b"\0.modinfo\0.shstrtab\0"
    body_off = 64
    modinfo_off, shstr_off = body_off, body_off + len(modinfo)
    shoff = shstr_off + len(shstrtab)
    shoff += -shoff % 8
    header = b"\x7fELF" + bytes([2, 1, 1]) + b"\0" * 9 + struct.pack(
        "<HHIQQQIHHHHHH", 1, 62, 1, 0, 0, shoff, 0, 64, 0, 0, 64, 3, 2)
    sections = [struct.pack("<IIQQQQIIQQ", 0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
                struct.pack("<IIQQQQIIQQ", 1, 1, 2, 0, modinfo_off, len(modinfo), 0, 0, 1, 0),
                struct.pack("<IIQQQQIIQQ", 10, 3, 0, 0, shstr_off, len(shstrtab), 0, 0, 1, 0)]
    blob = header + modinfo + shstrtab
    return blob + b"\0" * (shoff - len(blob)) + b"".join(sections)


def test_modinfo_dependencies() -> None:
    data = fake_module(b"license=GPL\0depends=jbd2,mbcache,crc16\0"
                       b"softdep=pre: crc32c post: foo\0name=ext4\0")
    info = elf.parse_modinfo(data)
    assert info["name"] == ["ext4"]
    hard, soft = elf.module_dependencies(info)
    assert hard == ["jbd2", "mbcache", "crc16"]
    assert soft == ["crc32c", "foo"]
    assert elf.module_dependencies(elf.parse_modinfo(fake_module(b"depends=\0"))) == ([], [])


def make_packages(tmp_path: Path) -> PackageTree:
    """Two fake packages: a program with its libraries (copied from the host)."""
    prog = tmp_path / "prog"
    libs = tmp_path / "libs"
    (prog / "bin").mkdir(parents=True)
    shutil.copy(shutil.which("true") or "/bin/true", prog / "bin" / "true")
    (prog / "usr/sbin").mkdir(parents=True)
    os.symlink("/bin/true", prog / "usr/sbin/yes-true")
    info = elf.read_dynamic(prog / "bin" / "true")
    assert info is not None and info.interpreter
    libdir = libs / "lib/x86_64-linux-gnu"
    libdir.mkdir(parents=True)
    for soname in info.needed:
        shutil.copy(Path("/lib/x86_64-linux-gnu") / soname, libdir / (soname + ".real"))
        os.symlink(soname + ".real", libdir / soname)
    (libs / "lib64").mkdir()
    os.symlink("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", libs / "lib64/ld-linux-x86-64.so.2")
    shutil.copy("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
                libdir / "ld-linux-x86-64.so.2")
    return PackageTree({Package("prog", "1", "amd64"): prog,
                        Package("libs", "2", "amd64"): libs})


def test_package_tree_lookup_and_resolve(tmp_path: Path) -> None:
    tree = make_packages(tmp_path)
    assert tree.lookup("/bin/true") == tree.lookup("/usr/bin/true")
    assert tree.resolve("/usr/sbin/yes-true") == "/usr/bin/true"
    assert tree.resolve("/lib/x86_64-linux-gnu/libc.so.6") == \
        "/usr/lib/x86_64-linux-gnu/libc.so.6.real"
    assert tree.resolve("/nope") is None
    assert tree.find_program("yes-true") == "/usr/sbin/yes-true"


def test_root_add_binary_brings_its_libraries(tmp_path: Path) -> None:
    tree = make_packages(tmp_path)
    log = Log(tmp_path / "build.log")
    root = Root(tmp_path / "root", tree, log)
    assert root.add_binary("yes-true") == "/usr/bin/true"
    base = root.path
    assert (base / "usr/sbin/yes-true").is_symlink()
    assert (base / "usr/bin/true").is_file()
    assert (base / "usr/lib/x86_64-linux-gnu/libc.so.6").is_symlink()
    assert (base / "usr/lib/x86_64-linux-gnu/libc.so.6.real").is_file()
    assert (base / "usr/lib64/ld-linux-x86-64.so.2").is_symlink()
    assert os.readlink(base / "lib64") == "usr/lib64"
    assert {p.name for p in root.used} == {"prog", "libs"}
    assert not root.missing_libs
    with pytest.raises(FileNotFoundError):
        root.add_binary("no-such-program")


def test_failing_stage_names_itself_and_the_log(tmp_path: Path) -> None:
    log = Log(tmp_path / "build.log")
    with pytest.raises(BuildError, match=r"stage 'kernel' failed: .*build\.log"):
        with log.step("kernel"):
            log.run(["false"])
    assert "=== kernel" in (tmp_path / "build.log").read_text()


def test_segments_put_what_changes_last() -> None:
    agent = ("usr/bin/ironic-python-agent", "usr/lib/python3/dist-packages/ironic_python_agent",
             "usr/lib/python3/dist-packages/lean_ipa-")
    assert segment_of("init", agent) == "local"
    assert segment_of("etc/passwd", agent) == "local"
    assert segment_of("usr/lib/python3/dist-packages/ironic_python_agent/api.py",
                      agent) == "local"
    assert segment_of("usr/lib/python3/dist-packages/lean_ipa-13.0.0.dist-info/RECORD",
                      agent) == "local"
    assert segment_of("usr/lib/python3/dist-packages/requests/api.py", agent) == "base"
    assert segment_of("usr/lib/python3.11/os.pyc", agent) == "base"
    assert segment_of("usr/lib/modules/6.1.0/kernel/fs/ext4/ext4.ko.xz", agent) == "base"
    assert segment_of("usr/bin/lsblk", agent) == "base"
    assert segment_of("usr/bin/new-agent-script", agent,
                      frozenset({"usr/bin/new-agent-script"})) == "local"


def test_option_parsing_helpers(tmp_path: Path) -> None:
    assert _words("a, b c,,d") == ["a", "b", "c", "d"]
    keys = tmp_path / "keys.pub"
    keys.write_text("# mine\nssh-ed25519 AAAA one\n\nssh-rsa BBBB two\n")
    assert _keys([str(keys), "ssh-ed25519 CCCC three"]) == [
        "ssh-ed25519 AAAA one", "ssh-rsa BBBB two", "ssh-ed25519 CCCC three"]


def test_init_is_small_valid_sh_and_shellchecked() -> None:
    init = TINYIPA / "init"
    assert len(init.read_text().splitlines()) < 150
    subprocess.run(["sh", "-n", str(init)], check=True)
    for script in ("init", "udhcpc.script", "build-tinyipa"):
        proc = subprocess.run(["shellcheck", str(TINYIPA / script)], capture_output=True,
                              text=True)
        assert proc.returncode == 0, proc.stdout


def test_config_for_arm64_has_its_names_and_no_stubs() -> None:
    import tomllib

    from buildlib import arch
    from tinyipa.build import for_arch

    config = tomllib.loads((TINYIPA / "tinyipa.toml").read_text())
    arm = for_arch(config, arch.get("arm64"))
    assert "linux-image-arm64" in arm["packages"]
    assert "config-{version}-aarch64-linux-gnu" in arm["python_prune"]
    # stubs are compiled by the host's gcc: none for another architecture
    assert arm["stubs"] == {} and config["stubs"]
    x86 = for_arch(config, arch.get("x86_64"))
    assert "linux-image-amd64" in x86["packages"]
    assert x86["stubs"] == config["stubs"]


def test_arm64_kernel_image_is_gzipped_and_bzimage_kept(tmp_path: Path) -> None:
    import gzip

    from tinyipa.build import compressor, kernel_file

    image = bytearray(4096)
    image[56:60] = b"ARM\x64"
    (tmp_path / "Image").write_bytes(bytes(image))
    kernel_file(tmp_path / "Image", tmp_path / "arm64.kernel")
    packed = (tmp_path / "arm64.kernel").read_bytes()
    assert gzip.decompress(packed) == bytes(image)
    assert packed == gzip.compress(bytes(image), compresslevel=9, mtime=0)  # reproducible
    bz = bytearray(4096)
    bz[0x202:0x206] = b"HdrS"
    (tmp_path / "bzImage").write_bytes(bytes(bz))
    kernel_file(tmp_path / "bzImage", tmp_path / "x86.kernel")
    assert (tmp_path / "x86.kernel").read_bytes() == bytes(bz)
    # xz's BCJ filter is for x86 code only
    assert "--x86" in compressor("xz", "base") and "--x86" not in compressor("xz", "base",
                                                                                "arm64")
