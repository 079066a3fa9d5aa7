# SPDX-License-Identifier: Apache-2.0
"""tinyipa build options (``--burnin``, ``--extra-hardware``): the [options.*] tables."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from tinyipa import stub
from tinyipa.__main__ import parse_args
from tinyipa.build import apply_options

TOML = Path(__file__).resolve().parents[2] / "tinyipa" / "tinyipa.toml"


def config() -> dict:
    return tomllib.loads(TOML.read_text())


def test_no_options_is_the_default_image() -> None:
    base = config()
    merged = apply_options(base, [])
    assert "options" not in merged
    assert merged == {k: v for k, v in base.items() if k != "options"}


def test_burnin_adds_the_tools_and_stubs_their_heavy_libraries() -> None:
    merged = apply_options(config(), ["burnin"])
    assert {"stress-ng", "fio"} <= set(merged["packages"]) & set(merged["binaries"])
    specs = stub.specs(merged)  # every stub has a reason
    assert {"librbd.so.1", "librados.so.2", "libIPSec_MB.so.1", "libfreeipmi.so.17"} <= set(specs)
    assert len(merged["binaries"]) == len(set(merged["binaries"]))


def test_qemu_img_option_adds_qemu_img_and_its_gnutls_stub() -> None:
    base = config()
    assert "qemu-img" not in base["binaries"] and "libgnutls.so.30" not in stub.specs(base)
    merged = apply_options(base, ["qemu-img"])
    assert "qemu-img" in merged["binaries"] and "qemu-utils" in merged["packages"]
    assert "libgnutls.so.30" in stub.specs(merged)


def test_extra_hardware_adds_python_hardware_and_keeps_the_stdlib_it_imports() -> None:
    base = config()
    merged = apply_options(base, ["extra-hardware"])
    assert merged["python"] == ["hardware"]
    assert {"lshw", "ethtool", "lspci"} <= set(merged["binaries"])
    for name in ("xml/dom", "xml/etree", "xml/sax", "lib-dynload/pyexpat", "pty", "tty"):
        assert name in base["python_prune"] and name not in merged["python_prune"]


def test_unknown_option_is_named() -> None:
    with pytest.raises(ValueError, match="unknown build option 'gpu'"):
        apply_options(config(), ["gpu"])


def test_command_line_flags(tmp_path: Path) -> None:
    wheel = tmp_path / "lean_ipa-1-py3-none-any.whl"
    wheel.write_bytes(b"")
    assert parse_args(["--wheel", str(wheel)]).options == []
    ctx = parse_args(["--wheel", str(wheel), "--burnin", "--extra-hardware"])
    assert ctx.options == ["burnin", "extra-hardware"]
