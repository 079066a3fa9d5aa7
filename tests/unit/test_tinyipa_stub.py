# SPDX-License-Identifier: Apache-2.0
"""Stub libraries (tinyipa/stub.py): readelf parsing on captured output, the
generated C and version script, and a compiled stub loaded BIND_NOW."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.unit.test_tinyipa_builder import make_packages
from tinyipa import stub
from tinyipa.log import Log
from tinyipa.root import Root
from tinyipa.stub import Spec, Symbol

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "readelf"


def sample(name: str) -> dict[str, list[Symbol]]:
    return stub.parse_dynsyms((SAMPLES / name).read_text())


def imports() -> list[Symbol]:
    return [s for syms in sample("ipmitool-libnvme-mi.txt").values() for s in syms]


def test_parse_several_files() -> None:
    files = sample("ipmitool-libnvme-mi.txt")
    assert list(files) == ["bin/ipmitool", "lib/x86_64-linux-gnu/libnvme-mi.so.1.3.0"]
    ipmitool = {s.name: s for s in files["bin/ipmitool"]}
    assert ipmitool["ipmi_ctx_create"] == Symbol("ipmi_ctx_create", None, "FUNC", 0,
                                                 defined=False)
    assert ipmitool["stdout"].version == "GLIBC_2.2.5" and ipmitool["stdout"].kind == "OBJECT"
    assert ipmitool["__cxa_finalize"].weak
    mi = {s.ref: s for s in files["lib/x86_64-linux-gnu/libnvme-mi.so.1.3.0"]}
    assert not mi["dbus_bus_get@LIBDBUS_1_3"].defined
    scan = mi["nvme_mi_scan_mctp@LIBNVME_MI_1_1"]
    assert scan.defined and scan.default and scan.size == 1934
    # the version definition (ABS) and the null symbol are not symbols
    assert "LIBNVME_MI_1_1" not in {s.name for s in mi.values()}
    assert "" not in {s.name for s in mi.values()}


def test_parse_one_file_kinds_and_hidden_versions() -> None:
    (libc,) = sample("libc.txt").values()
    by_ref = {(s.ref, s.default): s for s in libc}
    assert by_ref[("errno@GLIBC_PRIVATE", True)].kind == "TLS"
    assert by_ref[("errno@GLIBC_PRIVATE", True)].size == 4
    assert by_ref[("sys_errlist@GLIBC_2.3", False)].size == 1008
    assert by_ref[("memcpy@GLIBC_2.14", True)].kind == "IFUNC"
    assert not by_ref[("memcpy@GLIBC_2.2.5", False)].default
    assert by_ref[("environ@GLIBC_2.2.5", True)].weak
    assert "GLIBC_2.2.5" not in {s.name for s in libc}
    assert stub.parse_dynsyms("readelf: Error: not an ELF file\n") == {}


def test_stub_symbols_are_the_imported_ones_the_library_defines() -> None:
    (freeipmi,) = sample("libfreeipmi.txt").values()
    wanted = stub.stub_symbols(imports(), freeipmi)
    # imported and defined; not malloc (the library imports it too), not the
    # defined-but-unused ipmi_ctx_open_outofband, not ipmitool's libc imports
    assert [s.name for s in wanted] == ["ipmi_cmd_raw", "ipmi_cmd_raw_ipmb", "ipmi_ctx_create"]
    assert all(s.version is None and s.kind == "FUNC" and s.defined for s in wanted)

    (dbus,) = sample("libdbus.txt").values()
    extra = [Symbol("_dbus_no_memory_message", "LIBDBUS_PRIVATE_1.14.10", "OBJECT", 0, False),
             Symbol("dbus_connection_open", "LIBDBUS_9_9", "FUNC", 0, False)]
    wanted = stub.stub_symbols(imports() + extra, dbus)
    assert [s.ref for s in wanted] == [
        "_dbus_no_memory_message@LIBDBUS_PRIVATE_1.14.10", "dbus_bus_get@LIBDBUS_1_3",
        "dbus_error_init@LIBDBUS_1_3", "dbus_message_unref@LIBDBUS_1_3"]
    assert wanted[0].kind == "OBJECT" and wanted[0].size == 8  # the library's size


def test_old_symbol_versions_are_refused() -> None:
    (libc,) = sample("libc.txt").values()
    old = Symbol("memcpy", "GLIBC_2.2.5", "FUNC", 0, defined=False)
    with pytest.raises(ValueError, match="memcpy@GLIBC_2.2.5"):
        stub.stub_symbols([old], libc)
    new = Symbol("memcpy", "GLIBC_2.14", "FUNC", 0, defined=False)
    assert [s.kind for s in stub.stub_symbols([new], libc)] == ["IFUNC"]


def test_specs_from_the_config() -> None:
    table = stub.specs({"stubs": {"libx.so.1": {"reason": "x is off",
                                                "succeed": ["x_init"]}}})
    assert table == {"libx.so.1": Spec("libx.so.1", "x is off", ("x_init",))}
    with pytest.raises(ValueError, match="needs a reason"):
        stub.specs({"stubs": {"libx.so.1": {}}})
    with pytest.raises(ValueError, match="unknown keys"):
        stub.specs({"stubs": {"libx.so.1": {"reason": "r", "sucess": []}}})
    assert stub.specs({}) == {}


def test_the_shipped_table() -> None:
    import tomllib
    config = tomllib.loads((Path(stub.__file__).parent / "tinyipa.toml").read_text())
    assert {"libfreeipmi.so.17", "libdbus-1.so.3"} <= set(stub.specs(config))
    # qemu-img's gnutls stub comes with the --qemu-img option
    table = stub.specs(config["options"]["qemu-img"])
    assert "gnutls_global_init" in table["libgnutls.so.30"].succeed


def test_root_neither_copies_nor_follows_a_stubbed_library(tmp_path: Path) -> None:
    tree = make_packages(tmp_path)
    root = Root(tmp_path / "root", tree, Log(tmp_path / "build.log"), stubs=["libc.so.6"])
    root.add_binary("yes-true")
    assert root.stubbed == {"libc.so.6": {"/usr/bin/true"}}
    assert not root.exists("/usr/lib/x86_64-linux-gnu/libc.so.6")
    assert not root.exists("/usr/lib/x86_64-linux-gnu/libc.so.6.real")
    assert not root.missing_libs


def test_generated_c_and_version_script() -> None:
    syms = [Symbol("x_init", "X_1", "FUNC", 10, True),
            Symbol("x_run", "X_1", "FUNC", 10, True),
            Symbol("x_table", "X_2", "OBJECT", 24, True),
            Symbol("x_state", "X_2", "TLS", 4, True)]
    spec = Spec("libx.so.1", 'x "quoted" \\ off', ("x_init",))
    source = stub.c_source(spec, syms)
    assert "long x_init(void) { return 0; }" in source
    assert ("tinyipa: libx.so.1 is a stub in this image (x \\\"quoted\\\" \\\\ off); "
            "x_run was called\\012") in source
    assert "char x_table[24]" in source and "__thread char x_state[4]" in source
    script = stub.version_script(syms)
    assert script == ("X_1 {\n  global:\n    x_init;\n    x_run;\n  local: *;\n};\n"
                      "X_2 {\n  global:\n    x_state;\n    x_table;\n};\n")
    plain = [Symbol("y", None, "FUNC", 1, True)]
    assert stub.version_script(plain) == "{\n  global:\n    y;\n  local: *;\n};\n"
    with pytest.raises(ValueError, match="mixes"):
        stub.version_script(plain + syms)
    with pytest.raises(ValueError, match="cannot stub"):
        stub.c_source(spec, [Symbol("abort", None, "FUNC", 1, True)])


PROGRAM = r"""
#include <stdio.h>
#include <string.h>
extern int dbus_error_init(void *);
extern void dbus_bus_get(int, void *);
extern char _dbus_no_memory_message[8];
int main(int argc, char **argv)
{
    static const char zero[8];
    printf("init=%d zero=%d\n", dbus_error_init(0),
           memcmp(_dbus_no_memory_message, zero, 8) == 0);
    fflush(stdout);
    if (argc > 1)
        dbus_bus_get(0, 0);
    return 0;
}
"""


def test_compiled_stub_loads_bind_now_and_fails_loudly(tmp_path: Path) -> None:
    (dbus,) = sample("libdbus.txt").values()
    extra = [Symbol("_dbus_no_memory_message", "LIBDBUS_PRIVATE_1.14.10", "OBJECT", 0, False)]
    syms = stub.stub_symbols(imports() + extra, dbus)
    spec = Spec("libdbus-1.so.3", "no D-Bus here", ("dbus_error_init",))
    source, script = stub.c_source(spec, syms), stub.version_script(syms)
    data = stub.compile_stub(source, script, spec.soname, tmp_path / "cache-a")
    # reproducible: another cache (another temporary build directory), same bytes
    assert stub.compile_stub(source, script, spec.soname, tmp_path / "cache-b") == data
    assert b"tinyipa-stub-" not in data and str(tmp_path).encode() not in data
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "libdbus-1.so.3").write_bytes(data)

    dynsyms = subprocess.run(["readelf", "--dyn-syms", "-W", str(lib / "libdbus-1.so.3")],
                             capture_output=True, text=True, check=True).stdout
    defined = {s.ref: s for s in stub.parse_dynsyms(dynsyms)[""] if s.defined}
    assert set(defined) == {s.ref for s in syms}
    assert defined["_dbus_no_memory_message@LIBDBUS_PRIVATE_1.14.10"].size == 8
    soname = subprocess.run(["readelf", "-d", str(lib / "libdbus-1.so.3")],
                            capture_output=True, text=True, check=True).stdout
    assert "Library soname: [libdbus-1.so.3]" in soname

    (tmp_path / "main.c").write_text(PROGRAM)
    subprocess.run(["gcc", "-o", str(tmp_path / "main"), str(tmp_path / "main.c"),
                    f"-L{lib}", "-l:libdbus-1.so.3", "-Wl,-z,now"], check=True)
    env = {**os.environ, "LD_LIBRARY_PATH": str(lib)}
    ok = subprocess.run([str(tmp_path / "main")], capture_output=True, text=True, env=env)
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, "init=0 zero=1\n", "")
    bad = subprocess.run([str(tmp_path / "main"), "call"], capture_output=True, text=True,
                         env=env)
    assert bad.returncode == -signal.SIGABRT
    assert bad.stdout == "init=0 zero=1\n"
    assert bad.stderr == ("tinyipa: libdbus-1.so.3 is a stub in this image (no D-Bus here); "
                          "dbus_bus_get was called\n")
