# SPDX-License-Identifier: Apache-2.0
"""./build.sh coreos, then boot it in QEMU: systemd on the host, the agent in nspawn.

systemd-nspawn cannot run on the build host (no systemd as PID 1 there), so the
container is only ever started inside the booted image.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests import prebuild
from tests.boot.agent_checks import (AgentAPI, check_booted_agent, finalize_rescue,
                                     lookup_and_heartbeat, rescue_ssh)
from tests.boot.qemu import Guest, GuestSpec
from tests.fake_ironic import FakeIronic

TOP = Path(__file__).resolve().parents[2]
OUT = Path(os.environ.get("LEAN_IPA_OUT", TOP / "out"))
IMAGE = OUT / "coreos"
NAME = "lean-ipa-coreos"
DISK_SIZE = 2 << 30
DISK_SERIAL = "lean-ipa-disk0"
STATIC = "10.0.2.50"


def build(*args: str) -> None:
    proc = prebuild.build("coreos", *args)  # started with the session when args are none
    if proc.returncode != 0:
        log = IMAGE / "build.log"
        tail = log.read_text()[-4000:] if log.exists() else ""
        pytest.fail(f"./build.sh coreos {' '.join(args)} failed:\n{proc.output[-3000:]}\n"
                    f"--- build.log tail ---\n{tail}")


@pytest.fixture(scope="session")
def coreos_image() -> tuple[Path, Path]:
    """(kernel, initramfs); the builder itself skips work whose inputs are unchanged."""
    build()
    return IMAGE / f"{NAME}.kernel", IMAGE / f"{NAME}.initramfs"


def cpio_names(data: bytes) -> set[str]:
    listing = subprocess.run(["cpio", "-it", "--quiet"], input=data, capture_output=True,
                             check=True).stdout.decode()
    return set(listing.split("\n")) - {""}


# -- the artefacts --------------------------------------------------------------------


@pytest.mark.build
def test_outputs_checksums_manifest_log(coreos_image: tuple[Path, Path]) -> None:
    sums = dict(reversed(line.split("  ")) for line in
                (IMAGE / "sha256sums").read_text().splitlines())
    for path in coreos_image:
        assert sums[path.name] == hashlib.sha256(path.read_bytes()).hexdigest()
    manifest = (IMAGE / f"{NAME}.manifest").read_text().splitlines()
    assert any(line.startswith("host kernel-package linux-image-") for line in manifest)
    assert any(line.startswith("python werkzeug-") for line in manifest)
    assert any(line.startswith("input key ") for line in manifest)
    # Debian's signed kernel, checked with sbverify in the build (buildlib/signature.py)
    assert any(line.startswith("secure_boot true kernel signed by /CN=Debian Secure Boot")
               for line in manifest), [line for line in manifest if "secure_boot" in line]


@pytest.mark.build
def test_host_layout_and_container(coreos_image: tuple[Path, Path], tmp_path: Path) -> None:
    data = subprocess.run(["zstd", "-dc", str(coreos_image[1])], check=True,
                          stdout=subprocess.PIPE).stdout
    names = cpio_names(data)
    for needed in ("init", "usr/lib/systemd/systemd", "usr/bin/systemd-nspawn",
                   "usr/lib/systemd/systemd-networkd", "usr/share/oem/container.squashfs",
                   "usr/share/oem/host-config.yaml",
                   "etc/systemd/system/lean-ipa.service",
                   "etc/systemd/system/multi-user.target.wants/lean-ipa.service",
                   "etc/systemd/network/80-lean-ipa-dhcp.network",
                   "etc/systemd/system/lean-ipa-network.service",
                   "etc/systemd/system/systemd-networkd.service.wants/lean-ipa-network.service",
                   "etc/systemd/system/systemd-network-generator.service"):
        assert needed in names, needed
    assert not any(n.startswith("etc/ssh/ssh_host_") for n in names)  # made at boot
    assert "etc/initrd-release" not in names  # systemd runs the initramfs as the system
    modules = [n for n in names if n.startswith("usr/lib/modules/") and ".ko" in n]
    for wanted in ("virtio_net", "virtio_blk", "squashfs", "overlay", "loop", "nvme", "ahci"):
        assert any(m.endswith(f"/{wanted}.ko.zst") for m in modules), wanted
    assert any(n.endswith("/modules.dep") for n in names)

    # The container's rootfs: the agent, its tools, and no CA bundle from this host.
    subprocess.run(["cpio", "-id", "--quiet", "usr/share/oem/container.squashfs"],
                   input=data, cwd=tmp_path, check=True)
    image = tmp_path / "usr/share/oem/container.squashfs"
    listing = subprocess.run(["unsquashfs", "-l", str(image)], capture_output=True,
                             check=True, text=True).stdout.split()
    inside = {n.removeprefix("squashfs-root/") for n in listing}
    for program in ("usr/local/bin/ironic-python-agent", "usr/local/bin/lean-ipa-network",
                    "usr/bin/python3.11",
                    "usr/sbin/parted", "usr/sbin/sgdisk", "usr/bin/qemu-img",
                    "usr/sbin/mdadm", "usr/bin/lsblk", "usr/bin/udevadm", "usr/sbin/nvme",
                    "usr/bin/openssl", "usr/sbin/sfdisk"):
        assert program in inside, program
    assert not any("/pip/" in n for n in inside if n.startswith("opt/"))  # no pip shipped
    assert "etc/ssl/certs/ca-certificates.crt" not in inside


@pytest.mark.build
def test_user_host_gets_an_appended_oem_archive(coreos_image: tuple[Path, Path],
                                                tmp_path: Path) -> None:
    """--host-kernel/--host-initrd: the given initrd, untouched, then our OEM cpio."""
    (tmp_path / "tree/etc").mkdir(parents=True)
    (tmp_path / "tree/etc/os-release").write_text("ID=somehost\n")
    user_initrd = tmp_path / "host.initrd"
    listing = subprocess.run(["find", "."], cwd=tmp_path / "tree", capture_output=True,
                             check=True).stdout
    with open(user_initrd, "wb") as out:
        subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=tmp_path / "tree",
                       input=listing, stdout=out, check=True)
    with open(user_initrd, "ab") as out:
        out.write(b"\0\0\0")  # an odd length: the OEM archive must still start aligned
    keys = tmp_path / "keys.pub"
    keys.write_text("ssh-ed25519 "
                    "AAAAC3NzaC1lZDI1NTE5AAAAIExampleExampleExampleExampleExample t@x\n")
    config = tmp_path / "host.yaml"
    config.write_text("machine: agent-x\nlogin_user: core\n")  # e.g. Flatcar's user
    build("--name", "appended", "--out", str(tmp_path / "out"), "--authorized-keys", str(keys),
          "--host-config", str(config),
          "--host-kernel", str(coreos_image[0]), "--host-initrd", str(user_initrd))
    result = (tmp_path / "out/appended.initramfs").read_bytes()
    original = user_initrd.read_bytes()
    assert result.startswith(original)
    rest = result[len(original):]
    padding = len(rest) - len(rest.lstrip(b"\0"))
    assert (len(original) + padding) % 4 == 0
    names = cpio_names(rest.lstrip(b"\0"))
    assert {"usr/share/oem/container.squashfs", "usr/share/oem/host-config.yaml",
            "etc/systemd/system/lean-ipa.service",
            "etc/systemd/system/lean-ipa-container.service",
            "usr/share/oem/authorized_keys"} <= names
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    subprocess.run(["cpio", "-id", "--quiet"], input=rest.lstrip(b"\0"), cwd=unpacked,
                   check=True)
    assert (unpacked / "usr/share/oem/authorized_keys").read_bytes() == keys.read_bytes()
    unit = (unpacked / "etc/systemd/system/lean-ipa.service").read_text()
    assert "--machine=agent-x" in unit
    ssh = (unpacked / "etc/systemd/system/lean-ipa-ssh-keys.service").read_text()
    assert "/home/core/.ssh/authorized_keys" in ssh
    assert (tmp_path / "out/appended.kernel").read_bytes() == coreos_image[0].read_bytes()


# -- booting ------------------------------------------------------------------------------


@pytest.mark.boot
def test_boot_nspawn_agent_lookup_heartbeat_inventory_rescue(
        coreos_image: tuple[Path, Path]) -> None:
    kernel, initramfs = coreos_image
    with FakeIronic() as ironic:
        # ipa-api-url is only on the kernel command line: a lookup proves the agent
        # in the container reads the host's command line.
        spec = GuestSpec(
            name="coreos", kernel=kernel, initrd=initramfs, memory_mib=1536,
            disk_size=DISK_SIZE, disk_serial=DISK_SERIAL, forward_ports=(9999, 22),
            guest_address=STATIC)
        # A static address (the NIC named by its MAC) that the container's
        # lean-ipa-network gives the host before networkd starts; QEMU's DHCP
        # would hand out 10.0.2.15.
        ip = f"ip={STATIC}::10.0.2.2:255.255.255.0::{spec.mac.replace(':', '-')}:none"
        spec.append = (f"console=ttyS0 panic=-1 {ip} "
                       f"ipa-api-url=http://10.0.2.2:{ironic.port} ipa-insecure=1")
        with Guest(spec) as guest:
            beat = lookup_and_heartbeat(guest, ironic, lookup_timeout=600, heartbeat_timeout=300)
            assert beat["callback_url"].split("://")[1].startswith(f"{STATIC}:"), beat
            console = guest.console_path.read_text(errors="replace")
            assert re.search(rf"lean-ipa-network: \S+ up {STATIC}/24", console), console[-3000:]
            assert re.search(r"lean-ipa-network: systemd-networkd: \S+ unmanaged", console)
            api = AgentAPI.from_heartbeat(guest, beat, ironic.agent_token, timeout=180)
            # The agent's log lines come from inside the nspawn container.
            guest.wait_for_console(r"systemd-nspawn\[\d+\]: .*ironic_python_agent", 60)
            # /dev, /sys and udev's database reach the container: the virtio disk
            # is there with its size and the serial QEMU gave it.
            check_booted_agent(api, spec)

            # Rescue: the agent in the container takes the password; the host's
            # lean-ipa-rescue.path gives its rescue user that hash and starts sshd.
            finalize_rescue(api, "coreos-rescue-pw")
            port = guest.forwards[22]
            assert rescue_ssh(port, "coreos-rescue-pw",
                              "id -u; sudo -n id -u").split() == ["1999", "0"]
            with pytest.raises(AssertionError, match="Permission denied"):
                rescue_ssh(port, "not-the-password", "true", attempts=1)
            # minutes after boot: networkd took no DHCP lease beside the static address
            addresses = rescue_ssh(port, "coreos-rescue-pw", "ip -4 -o addr show scope global")
            assert [line.split()[3] for line in addresses.splitlines()] == [f"{STATIC}/24"], \
                addresses
