# SPDX-License-Identifier: Apache-2.0
"""The coreos builder's pure parts: host config, rendered units, module selection."""

from __future__ import annotations

from pathlib import Path

import pytest

from coreos import kernel, units

DEFAULTS = (Path(units.__file__).parent / "host-config.yaml").read_text()


def unit_options(text: str, key: str) -> list[str]:
    """Values of ``key=`` in a unit file, with continuation lines joined."""
    joined = text.replace("\\\n", " ")
    return [line.split("=", 1)[1] for line in joined.splitlines() if line.startswith(key + "=")]


def test_defaults_render_every_unit() -> None:
    rendered = units.render_units(units.load_config(DEFAULTS))
    assert set(rendered) == set(units.RENDERED.values())
    agent = rendered["etc/systemd/system/lean-ipa.service"]
    (execstart,) = unit_options(agent, "ExecStart")
    argv = execstart.split()
    assert argv[0] == "/usr/bin/systemd-nspawn"
    assert "--capability=all" in argv
    assert "--bind=/dev" in argv
    assert "--bind=/run/udev" in argv
    assert "--bind=/usr/share/oem:/mnt" in argv
    assert "--bind-ro=/usr/lib/modules:/usr/lib/modules" in argv
    assert "--private-network" not in execstart
    assert argv[-1] == "/usr/local/bin/ironic-python-agent"
    assert unit_options(agent, "Environment") == ["SYSTEMD_NSPAWN_API_VFS_WRITABLE=1"]
    assert unit_options(agent, "Restart") == ["on-failure"]
    network = rendered["etc/systemd/network/80-lean-ipa-dhcp.network"]
    assert unit_options(network, "Name") == ["en* eth*"]
    assert unit_options(network, "DHCP") == ["yes"]


def test_override_merges_and_renders() -> None:
    override = """
machine: agent_1
login_user: core
agent:
  environment: {IPA_DEBUG: "1"}
binds: ["/srv/images:/images:ro", "/var/tmp"]
"""
    config = units.load_config(DEFAULTS, override)
    assert config["agent"]["command"] == ["/usr/local/bin/ironic-python-agent"]  # kept
    rendered = units.render_units(config)
    agent = rendered["etc/systemd/system/lean-ipa.service"]
    argv = unit_options(agent, "ExecStart")[0].split()
    assert "--machine=agent_1" in argv
    assert "--directory=/var/lib/machines/agent_1" in argv
    assert "--bind-ro=/srv/images:/images" in argv
    assert "--bind=/var/tmp:/var/tmp" in argv
    assert "--setenv=IPA_DEBUG=1" in argv
    keys = rendered["etc/systemd/system/lean-ipa-ssh-keys.service"]
    assert "/home/core/.ssh/authorized_keys" in unit_options(keys, "ExecStart")[0]


def test_rescue_units_follow_the_machine() -> None:
    config = units.load_config(DEFAULTS, "machine: agent_1\n")
    rendered = units.render_units(config)
    path = rendered["etc/systemd/system/lean-ipa-rescue.path"]
    assert unit_options(path, "PathExists") == ["/var/lib/machines/agent_1/etc/.rescued"]
    service = rendered["etc/systemd/system/lean-ipa-rescue.service"]
    assert unit_options(service, "Conflicts") == ["ssh.service"]
    pre = " ".join(unit_options(service, "ExecStartPre"))
    assert "/var/lib/machines/agent_1/etc/ipa-rescue-config/ipa-rescue-password" in pre
    assert "$$(cat " in pre  # systemd passes one literal $ to the shell
    assert "PasswordAuthentication=yes" in unit_options(service, "ExecStart")[0]
    assert ("etc/systemd/system/multi-user.target.wants/lean-ipa-rescue.path"
            in units.ENABLED)


def test_lean_ipa_network_runs_from_the_container_before_networkd() -> None:
    """The host has no Python: the container's lean-ipa-network, on the host's network
    (no --private-network), writes networkd's and resolved's files on the host."""
    rendered = units.render_units(units.load_config(DEFAULTS, "machine: agent_1\n"))
    unit = rendered["etc/systemd/system/lean-ipa-network.service"]
    assert unit_options(unit, "DefaultDependencies") == ["no"]
    assert "systemd-networkd.service" in unit_options(unit, "Before")[0].split()
    assert "lean-ipa-container.service" in unit_options(unit, "After")[0].split()
    assert unit_options(unit, "SuccessExitStatus") == ["3"]
    argv = unit_options(unit, "ExecStart")[0].split()
    assert argv[0] == "/usr/bin/systemd-nspawn" and "--private-network" not in argv
    assert "--directory=/var/lib/machines/agent_1" in argv
    for path in ("/run/systemd/network", "/run/systemd/resolved.conf.d",
                 "/run/lean-ipa-network", "/dev", "/run/udev"):
        assert f"--bind={path}" in argv, path
    at = argv.index("/usr/local/bin/lean-ipa-network")
    assert argv[at + 1:] == ["--networkd", "/run/systemd/network",
                             "--resolved", "/run/systemd/resolved.conf.d"]
    assert unit_options(unit, "Environment") == ["SYSTEMD_NSPAWN_API_VFS_WRITABLE=1"]
    links = units.ENABLED
    assert links["etc/systemd/system/systemd-networkd.service.wants/lean-ipa-network.service"] \
        == "/etc/systemd/system/lean-ipa-network.service"
    assert links["etc/systemd/system/systemd-network-generator.service"] == "/dev/null"
    # every link configured by lean-ipa-network: no wait for a link networkd manages
    wait = rendered["etc/systemd/system/systemd-networkd-wait-online.service.d/lean-ipa.conf"]
    assert unit_options(wait, "ConditionPathExists") == [
        "!/run/lean-ipa-network/networkd-idle"]


@pytest.mark.parametrize("override, message", [
    ("colour: blue", "unknown keys colour"),
    ("machine: 'a b'", "machine"),
    ("agent: {command: []}", "agent.command"),
    ("network_command: /usr/local/bin/x", "network_command"),
    ("binds: [relative/path]", "binds"),
    ("binds: ['/a:/b:rx']", "binds"),
    ("- a list", "mapping"),
])
def test_bad_config_names_the_key(override: str, message: str) -> None:
    with pytest.raises(units.ConfigError, match=message):
        units.render_units(units.load_config(DEFAULTS, override))


def test_parse_bind() -> None:
    assert units.parse_bind("/a") == units.Bind("/a", "/a", False)
    assert units.parse_bind("/a:/b:ro").flag == "--bind-ro=/a:/b"
    assert units.parse_bind("/a::rw").flag == "--bind=/a:/a"


MODULES_DEP = """\
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
kernel/sound/core/snd.ko: kernel/sound/core/snd-timer.ko
kernel/sound/core/snd-timer.ko:
kernel/drivers/usb/gadget/libcomposite.ko:
"""


def test_select_modules_takes_prefixes_and_dependencies() -> None:
    deps = kernel.parse_modules_dep(MODULES_DEP)
    assert deps["kernel/net/core/failover.ko"] == ()
    chosen = kernel.select_modules(deps, ["kernel/drivers/net/virtio_net.ko",
                                          "kernel/drivers/usb/"],
                                   excludes=["kernel/drivers/usb/gadget/"])
    assert chosen == {"kernel/drivers/net/virtio_net.ko", "kernel/drivers/net/net_failover.ko",
                      "kernel/net/core/failover.ko"}


def test_default_module_set_keeps_what_the_boot_needs() -> None:
    for needed in ("kernel/drivers/net/virtio_net.ko", "kernel/fs/squashfs/squashfs.ko",
                   "kernel/fs/overlayfs/overlay.ko", "kernel/drivers/block/loop.ko",
                   "kernel/drivers/block/virtio_blk.ko", "kernel/drivers/nvme/host/nvme.ko"):
        assert needed.startswith(kernel.MODULE_PREFIXES)
        assert not needed.startswith(kernel.MODULE_EXCLUDES)


def test_command_line_errors_name_the_option(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from coreos import build

    kernel_file = tmp_path / "vmlinuz"
    kernel_file.write_bytes(b"k")
    with pytest.raises(SystemExit):
        build.parse_args(["--host-kernel", str(kernel_file)])
    assert "--host-kernel and --host-initrd go together" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build.parse_args(["--host-config", str(tmp_path / "missing.yaml")])
    assert "missing.yaml: no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("colour: blue\n")
    assert build.main(["--host-config", str(bad), "--out", str(tmp_path / "out"),
                       "--cache", str(tmp_path / "cache")]) == 1
    assert "unknown keys colour" in capsys.readouterr().err


def test_publish_keeps_one_cache_entry_per_kind(tmp_path: Path) -> None:
    from coreos import build

    for name in ("container-aaaa.squashfs", "container-rootfs-bbbb.tar",
                 "host-rootfs-cccc.tar"):
        (tmp_path / name).write_text("old")
    (tmp_path / "wheels-dddd").mkdir()
    new = tmp_path / "new.tmp"
    new.write_text("new")
    build.publish(new, tmp_path / "container-eeee.squashfs")
    fresh = tmp_path / "wheels.tmp"
    fresh.mkdir()
    build.publish(fresh, tmp_path / "wheels-ffff")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "container-eeee.squashfs", "container-rootfs-bbbb.tar", "host-rootfs-cccc.tar",
        "wheels-ffff"]


def _fake(bin_dir: Path, name: str, script: str) -> None:
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(0o755)


def test_auto_engine_refuses_a_docker_cli_without_daemon_and_installs_buildah(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from coreos import container
    from coreos.runner import BuildError

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # What docker 24 prints with no daemon (captured on this machine).
    _fake(bin_dir, "docker", "echo 'Cannot connect to the Docker daemon at "
          "unix:///var/run/docker.sock. Is the docker daemon running?' >&2; exit 1")
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(BuildError) as err:
        container.pick_engine("auto", tmp_path / "storage")
    said = str(err.value)
    assert "buildah: not installed" in said and "podman: not installed" in said
    assert "docker: `docker info` failed: Cannot connect to the Docker daemon" in said

    installed: list[str] = []
    lines: list[str] = []

    def install(package: str) -> None:
        installed.append(package)
        _fake(bin_dir, "buildah", 'echo "{}"')

    assert container.pick_engine("auto", tmp_path / "storage", install=install,
                                 log=lines.append) == "buildah"
    assert installed == ["buildah"]
    assert any("docker: `docker info` failed" in line and "installing buildah" in line
               for line in lines)
    # A working engine is taken without installing anything.
    assert container.pick_engine("auto", tmp_path / "storage", install=install) == "buildah"
    assert installed == ["buildah"]


def test_arm64_build_is_named_cached_and_fetched_for_arm64(tmp_path: Path) -> None:
    from coreos import build, container

    arm = build.parse_args(["--arch", "aarch64", "--cache", str(tmp_path)])
    x86 = build.parse_args(["--cache", str(tmp_path)])
    assert (arm.name, arm.arch.debian, arm.arch.native) == ("lean-ipa-coreos-arm64", "arm64", False)
    assert x86.name == "lean-ipa-coreos" and x86.arch.name == "x86_64"
    # each architecture its own cache entries (publish keeps one per kind): x86_64's
    # names as before, so its caches stay valid
    assert arm.cached("container", "k", ".squashfs").name == "container-arm64-k.squashfs"
    assert x86.cached("container", "k", ".squashfs").name == "container-k.squashfs"
    old = tmp_path / "coreos" / "container-k.squashfs"
    old.parent.mkdir()
    old.write_bytes(b"x86")
    tmp = tmp_path / "new.tmp"
    tmp.write_bytes(b"arm")
    build.publish(tmp, arm.cached("container", "j", ".squashfs"))
    assert old.exists()
    # arm64 wheels (or pure-Python ones), never x86_64's
    argv = container.pip_download("python3", tmp_path, arm.arch.wheel_platforms())
    tags = [argv[i + 1] for i, a in enumerate(argv) if a == "--platform"]
    assert tags[0] == "manylinux2014_aarch64" and all(t.endswith("_aarch64") for t in tags)
    assert container.pip_download("python3", tmp_path) == container.pip_download(
        "python3", tmp_path, x86.arch.wheel_platforms())


def test_the_kernel_package_and_file_of_arm64(tmp_path: Path) -> None:
    import gzip

    from buildlib import outputs

    plan = ["kmod", "linux-image-arm64", "linux-image-6.1.0-28-arm64", "linux-base"]
    assert kernel.image_package(plan, "arm64") == "linux-image-6.1.0-28-arm64"
    assert kernel.image_package(["linux-image-6.1.0-28-amd64"], "arm64") is None
    image = tmp_path / "vmlinuz-arm64"
    image.write_bytes(b"\0" * 56 + outputs.ARM64_IMAGE_MAGIC + b"\0" * 64)
    outputs.write_kernel(image, tmp_path / "k")
    assert gzip.decompress((tmp_path / "k").read_bytes()) == image.read_bytes()
    bz = tmp_path / "bzImage"
    bz.write_bytes(b"MZ" + b"\0" * 0x200 + b"HdrS")
    outputs.write_kernel(bz, tmp_path / "k")
    assert (tmp_path / "k").read_bytes() == bz.read_bytes()
