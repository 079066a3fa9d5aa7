# SPDX-License-Identifier: Apache-2.0
"""The builders' shared vocabulary and outputs (buildlib/options.py, outputs.py)."""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import tarfile
from pathlib import Path

import pytest

from buildlib import options, outputs


def parse(argv: list[str], target: str = "tinyipa") -> options.Common:
    p = argparse.ArgumentParser(prog=f"build.sh {target}")
    options.add_common(p, target, target)
    return options.common(p, p.parse_args(argv), target)


def test_common_flags_and_their_old_spellings(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# mine\nssh-ed25519 AAAA a@b\n")
    c = parse(["--suite", "trixie", "--arch", "amd64", "--name", "x", "--ssh-key", str(keys),
               "--ssh-key", "ssh-rsa BBBB c@d", "--password-hash", "$6$s$h",
               "--extra-modules", "bonding,mlx4_en", "--extra-modules", "igbvf",
               "--force", "--out", str(tmp_path / "o"), "--ironic-layout"])
    assert (c.release, c.arch, c.name) == ("trixie", "x86_64", "x")
    assert c.ssh_keys == ["ssh-ed25519 AAAA a@b", "ssh-rsa BBBB c@d"]
    assert c.extra_modules == ["bonding", "mlx4_en", "igbvf"]
    assert c.rebuild and c.ironic_layout and c.output == (tmp_path / "o").resolve()
    assert (c.ironic_flavor, c.ironic_branch) == ("tinyipa", "master")


def test_arm64_names_carry_the_architecture(monkeypatch: pytest.MonkeyPatch) -> None:
    def arm64(argv: list[str]) -> options.Common:
        p = argparse.ArgumentParser(prog="build.sh tinyipa")
        options.add_common(p, "tinyipa", "tinyipa")
        return options.common(p, p.parse_args(argv), "tinyipa", supported=("x86_64", "arm64"))

    assert (arm64(["--arch", "aarch64"]).arch, arm64(["--arch", "arm64"]).name) == (
        "arm64", "tinyipa-arm64")
    assert arm64(["--arch", "arm64", "--name", "edge"]).name == "edge-arm64"
    assert arm64(["--arch", "arm64", "--name", "edge-arm64"]).name == "edge-arm64"
    assert arm64(["--arch", "amd64", "--name", "edge"]).name == "edge"  # the default: as before
    monkeypatch.setenv("LEAN_IPA_ARCH", "arm64")
    assert arm64([]).name == "tinyipa-arm64"


def test_environment_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEAN_IPA_RELEASE", "trixie")
    monkeypatch.setenv("LEAN_IPA_EXTRA_MODULES", "bonding")
    monkeypatch.setenv("LEAN_IPA_REBUILD", "1")
    c = parse([], "coreos")
    assert (c.release, c.extra_modules, c.rebuild) == ("trixie", ["bonding"], True)
    assert parse(["--release", "bookworm"], "coreos").release == "bookworm"  # flags win


@pytest.mark.parametrize(("argv", "said"), [
    (["--arch", "arm64"], "--arch arm64: tinyipa builds only x86_64 images for now"),
    (["--arch", "riscv64"], "--arch riscv64: unknown architecture 'riscv64' (known: "
                            "aarch64, amd64, arm64, x86_64)"),
    (["--name", "../x"], "--name '../x': a plain file name is needed"),
    (["--password-hash", "hunter2"], "--password-hash: a crypt(3) hash is needed"),
    (["--ironic-flavor", "a/b"], "--ironic-flavor 'a/b': a plain name is needed"),
])
def test_bad_values_name_the_flag(argv: list[str], said: str,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse(argv)
    assert said in capsys.readouterr().err


def test_publish_keeps_other_names_sums(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / f"{name}.kernel").write_bytes(name.encode())
        (tmp_path / f"{name}.initramfs").write_bytes(name.encode() * 2)
        outputs.publish(tmp_path, name, outputs.common_inputs("dib", name, "bookworm",
                                                               "x86_64"))
    assert (tmp_path / "b.manifest").read_text().splitlines()[:2] == [
        "input builder dib", "input name b"]
    check = subprocess.run(["sha256sum", "-c", "sha256sums"], cwd=tmp_path,
                           capture_output=True, text=True, check=False)
    assert check.returncode == 0 and check.stdout.count(": OK") == 4, check.stdout


def test_ironic_layout_is_what_the_downloaders_expect(tmp_path: Path) -> None:
    (tmp_path / "img.kernel").write_bytes(b"K" * 100)
    (tmp_path / "img.initramfs").write_bytes(b"I" * 200)
    outputs.ironic_layout(tmp_path, "img", "tinyipa", "stable/2025.1")
    ironic = tmp_path / "ironic"
    # Metal3's ironic-ipa-downloader: the tarball holds <base>.kernel/.initramfs.
    tarball = ironic / "ipa-tinyipa-stable-2025.1.tar.gz"
    with tarfile.open(tarball) as tar:
        assert sorted(tar.getnames()) == ["ipa-tinyipa-stable-2025.1.initramfs",
                                          "ipa-tinyipa-stable-2025.1.kernel"]
        member = tar.extractfile("ipa-tinyipa-stable-2025.1.kernel")
        assert member is not None and member.read() == b"K" * 100
    for rel in ("ipa-tinyipa-stable-2025.1.tar.gz", "ironic-python-agent.kernel",
                "ironic-python-agent.initramfs", "files/ipa-tinyipa-stable-2025.1.kernel",
                "files/ipa-tinyipa-stable-2025.1.initramfs"):
        path = ironic / rel
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert (path.parent / (path.name + ".sha256")).read_text() == f"{digest}  {path.name}\n"
    assert (ironic / "ironic-python-agent.initramfs").read_bytes() == b"I" * 200


def test_one_kernel_module_selection_for_every_builder() -> None:
    import re

    from buildlib import modules
    from coreos import kernel

    sel = modules.selection()
    assert "virtio_net" in sel.names and set(sel.load) <= set(sel.names)
    assert kernel.MODULE_PREFIXES == sel.coreos_keep
    assert kernel.MODULE_NAMES == sel.names
    # The element's default (for disk-image-create without build.sh) is the list's.
    env = (Path(__file__).resolve().parents[2]
           / "elements/lean-ipa-ramdisk/environment.d/10-lean-ipa-ramdisk.bash").read_text()
    default = re.search(r"DIB_LEAN_IPA_PRUNE_MODULES-([^}]*)\}", env)
    assert default is not None and tuple(default.group(1).split()) == sel.dib_prune
    # coreos keeps the named modules even outside its trees.
    deps = {"kernel/drivers/net/bonding/bonding.ko": (),
            "kernel/sound/core/snd.ko": (), "kernel/drivers/net/virtio_net.ko": ()}
    kept = kernel.select_modules(deps, ("kernel/drivers/net/virtio",), (), ["bonding"])
    assert kept == {"kernel/drivers/net/bonding/bonding.ko", "kernel/drivers/net/virtio_net.ko"}


def test_dib_and_coreos_take_the_vocabulary_and_their_old_spellings(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from coreos import build as coreos_build
    from dib import build as dib_build

    monkeypatch.setenv("LEAN_IPA_MODULES", "igbvf")
    ctx = dib_build.parse_args(["-o", "mine", "--module", "bonding", "--extra-modules", "mlx4_en",
                                "--force", "--login", "-p", "fio,stress-ng", "-e", "my-element"])
    c = ctx.common
    assert (c.name, c.rebuild, c.output.name) == ("mine", True, "dib")
    assert c.extra_modules == ["bonding", "mlx4_en", "igbvf"]
    assert ctx.packages == ["fio", "stress-ng"]
    assert dib_build.element_list(ctx) == ["debian-minimal", "lean-ipa", "my-element",
                                           "lean-ipa-login"]
    keys = tmp_path / "keys"
    keys.write_text("ssh-ed25519 AAAA file@key\n")
    cctx = coreos_build.parse_args(["--suite", "trixie", "--out", str(tmp_path / "o"),
                                    "--authorized-keys", str(keys),
                                    "--ssh-key", "ssh-rsa BBBB flag@key"])
    assert (cctx.suite, cctx.out) == ("trixie", (tmp_path / "o").resolve())
    assert cctx.ssh_keys == ["ssh-ed25519 AAAA file@key", "ssh-rsa BBBB flag@key"]
    # arm64 is a builder's --arch like tinyipa's, its outputs named for it
    assert coreos_build.parse_args(["--arch", "arm64"]).name == "lean-ipa-coreos-arm64"
    assert coreos_build.parse_args(["--arch", "arm64", "--name", "x"]).name == "x-arm64"
    assert dib_build.parse_args(["--arch", "aarch64"]).name == "lean-ipa-arm64"
    assert dib_build.parse_args(["-o", "mine"]).name == "mine"


def test_dib_is_told_the_architecture() -> None:
    from buildlib import arch
    from dib import build as dib_build

    arm = dib_build.arch_environment(arch.get("arm64"), "--verbose")
    assert arm["ARCH"] == "arm64"   # dpkg's name: debootstrap --arch, linux-image-arm64
    assert arm["DIB_LEAN_IPA_WHEEL_PLATFORMS"].split()[0] == "manylinux2014_aarch64"
    # mmdebstrap's own check needs arch-test; buildlib/emulation.py has checked
    assert arm["DIB_MMDEBSTRAP_EXTRA_ARGS"] == "--verbose --skip=check/qemu"
    assert dib_build.arch_environment(arch.get("x86_64")) == {"ARCH": "amd64"}


def test_architectures_and_their_names() -> None:
    from buildlib import arch, modules

    arm = arch.get("aarch64")
    assert (arm.name, arm.debian, arm.machine, arm.triplet, arm.suffix) == (
        "arm64", "arm64", "aarch64", "aarch64-linux-gnu", "-arm64")
    assert arch.get("amd64").suffix == "" and arch.get("x86_64").debian == "amd64"
    assert arm.wheel_platforms()[0] == "manylinux2014_aarch64"
    assert "manylinux_2_36_aarch64" in arm.wheel_platforms()
    with pytest.raises(KeyError, match="unknown architecture 'mips'"):
        arch.get("mips")
    # one module selection, adjusted per architecture
    x86, arm64 = modules.selection(), modules.selection(arch="arm64")
    assert "virtio_mmio" in arm64.names and "virtio_mmio" not in x86.names
    assert "vmw_pvscsi" in x86.names and "vmw_pvscsi" not in arm64.names
    assert set(arm64.names) - {"virtio_mmio"} < set(x86.names)


def test_extra_hardware_is_one_flag_for_every_agent_image(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from coreos import build as coreos_build
    from dib import build as dib_build
    from tinyipa.__main__ import parse_args as tinyipa_args

    assert not coreos_build.parse_args([]).extra_hardware
    cctx = coreos_build.parse_args(["--extra-hardware"])
    assert coreos_build.extra_python(cctx) == ["hardware"]
    packages = coreos_build.container_packages(extra_hardware=True)
    assert "lshw" in packages and len(packages) == len(set(packages))
    assert "lshw" not in coreos_build.container_packages()
    assert dib_build.parse_args(["--extra-hardware"]).extra_hardware
    wheel = tmp_path / "lean_ipa-13.0.0-py3-none-any.whl"
    wheel.write_bytes(b"")
    assert "extra-hardware" in tinyipa_args(["--wheel", str(wheel), "--extra-hardware"]).options
    # The environment spelling every builder shares, and the older ones.
    monkeypatch.setenv("LEAN_IPA_EXTRA_HARDWARE", "1")
    assert coreos_build.parse_args([]).extra_hardware
    monkeypatch.delenv("LEAN_IPA_EXTRA_HARDWARE")
    monkeypatch.setenv("DIB_LEAN_IPA_EXTRA_HARDWARE", "1")
    assert dib_build.parse_args([]).extra_hardware
