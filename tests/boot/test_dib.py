# SPDX-License-Identifier: Apache-2.0
"""The diskimage-builder image (``./build.sh dib``) booted under QEMU (TCG).

One guest, 1 vCPU and 1 GiB of RAM, a virtio NIC on user networking and a
virtio disk. The NIC gets a static address from ``ip=`` (its MAC in place of a
name): lean-ipa-network configures it before systemd-networkd starts, and
networkd must take no DHCP lease although QEMU offers one (10.0.2.15). The
agent started by systemd must look itself up in a fake Ironic on 127.0.0.1
(reached from the guest as 10.0.2.2) with the NIC's MAC, then heartbeat with
a callback URL on 10.0.2.50 that works through ``hostfwd``: ``GET /v1/status``
answers and ``poll.get_hardware_info`` lists the virtio disk. Last,
``rescue.finalize_rescue`` (as Ironic sends it) makes an SSH login as
``rescue`` with that password work (sudo to root included), and the guest
shows 10.0.2.50 as its only IPv4 address.
The serial console is kept under ``out/test-artifacts/dib/`` on failure.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests import prebuild
from tests.boot.agent_checks import (AGENT_PORT, AgentAPI, agent_status, finalize_rescue,
                                     hardware_inventory, rescue_ssh, virtio_disk)
from tests.boot.qemu import Guest
from tests.boot.qemu import GuestSpec
from tests.fake_ironic import FakeIronic
from tests.imageserver import ImageServer

pytestmark = [pytest.mark.boot, pytest.mark.build]

TOP = Path(__file__).resolve().parents[2]
OUT = Path(os.environ.get("LEAN_IPA_OUT", TOP / "out"))
DIB = OUT / "dib"
DISK_SERIAL = "lean-ipa-dib-disk0"
DISK_SIZE = 3 << 30
STATIC = "10.0.2.50"  # QEMU's DHCP would give 10.0.2.15
LUN_SIZE = 5 << 30  # over 4 GiB: the agent's root device when no hint says otherwise
LUN_WWN = "0x5000c500a1b2c3d4"
LUN_SERIAL = "LEANIPA-LUN0"


@pytest.fixture(scope="session")
def dib_image() -> tuple[Path, Path]:
    """out/dib/lean-ipa.{kernel,initramfs}; build.sh skips the build if nothing changed."""
    proc = prebuild.build("dib")  # started in the background with the session
    if proc.returncode != 0:
        log = DIB / "build.log"
        tail = log.read_text(errors="replace")[-4000:] if log.exists() else ""
        pytest.fail(f"./build.sh dib failed:\n{proc.output[-3000:]}\n"
                    f"--- build.log tail ---\n{tail}")
    kernel, initrd = DIB / "lean-ipa.kernel", DIB / "lean-ipa.initramfs"
    assert kernel.is_file() and initrd.is_file()
    return kernel, initrd


@pytest.fixture(scope="session")
def dib_root(dib_image: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The initramfs unpacked: a small uncompressed cpio (device nodes), then the zstd root."""
    root = tmp_path_factory.mktemp("dib-root")
    data = dib_image[1].read_bytes()
    end = data.index(b"TRAILER!!!") + len(b"TRAILER!!!")
    while data[end] == 0:
        end += 1
    unzstd = subprocess.run(["zstd", "-dc"], input=data[end:], check=True, capture_output=True)
    for archive in (data[:end], unzstd.stdout):
        subprocess.run(["cpio", "-idm", "--quiet", "--no-absolute-filenames"], cwd=root,
                       input=archive, check=True, capture_output=True)
    return root


def certs(pem: str) -> set[str]:
    """The base64 bodies of the certificates in a PEM bundle."""
    return {"".join(body.split()) for body in re.findall(
        r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", pem, re.S)}


def test_outputs_checksums_and_manifest(dib_image: tuple[Path, Path]) -> None:
    for line in (DIB / "sha256sums").read_text().splitlines():
        digest, name = line.split()
        assert hashlib.sha256((DIB / name).read_bytes()).hexdigest() == digest
    manifest = (DIB / "lean-ipa.manifest").read_text().splitlines()
    kinds = {line.split()[0] for line in manifest}
    assert {"input", "kernel", "deb", "python"} <= kinds
    assert any(line.startswith("python lean-ipa 13.0.0 ") for line in manifest)
    assert any(line.startswith("deb linux-image-") for line in manifest)
    assert any(line.startswith("input wheel lean_ipa-") for line in manifest)
    # Debian's signed kernel, checked with sbverify in the build (buildlib/signature.py)
    assert any(line.startswith("secure_boot true kernel signed by /CN=Debian Secure Boot")
               for line in manifest), [line for line in manifest if "secure_boot" in line]


def test_systemd_is_init_and_the_agent_is_enabled(dib_root: Path) -> None:
    assert os.readlink(dib_root / "init") == "sbin/init"
    assert (dib_root / "dev" / "console").is_char_device()
    wants = dib_root / "etc/systemd/system/multi-user.target.wants"
    assert (wants / "lean-ipa.service").is_symlink()
    assert (wants / "systemd-networkd.service").is_symlink()
    system = dib_root / "etc/systemd/system"
    # lean-ipa-network before networkd, and nothing else reading ip= (Debian enables
    # the generator)
    assert (system / "systemd-networkd.service.wants/lean-ipa-network.service").is_symlink()
    assert os.readlink(system / "systemd-network-generator.service") == "/dev/null"
    assert (dib_root / "opt/lean-ipa/bin/lean-ipa-network").exists()
    unit = (dib_root / "etc/systemd/system/lean-ipa.service").read_text()
    ordering = [line for line in unit.splitlines()
                if line.split("=")[0] in ("After", "Wants", "Requires")]
    assert ordering and not [line for line in ordering if "network-online" in line]
    assert (dib_root / "opt/lean-ipa/bin/ironic-python-agent").exists()
    assert not list((dib_root / "opt/lean-ipa").rglob("pip/__init__.py")), "pip left in the venv"
    assert not list((dib_root / "boot").iterdir())


def test_no_host_ca_in_the_image(dib_root: Path) -> None:
    """The build host's own CAs (an intercepting proxy's) never go into the image."""
    bundle = dib_root / "etc/ssl/certs/ca-certificates.crt"
    image = certs(bundle.read_text())
    host = Path("/etc/ssl/certs/ca-certificates.crt")
    host_only = certs(host.read_text()) - image if host.exists() else set()
    for local in Path("/usr/local/share/ca-certificates").glob("**/*.crt"):
        host_only |= certs(local.read_text())
    assert not host_only & image
    for pem in (dib_root / "opt/lean-ipa").rglob("cacert.pem"):
        assert not host_only & certs(pem.read_text()), f"host CA in {pem}"
    markers = {base64.b64encode(base64.b64decode(c)[-60:-12]) for c in host_only}
    for path in (dib_root / "etc/ssl").rglob("*"):
        if path.is_file() and not path.is_symlink():
            blob = path.read_bytes().replace(b"\n", b"")
            assert not any(m in blob for m in markers), f"host CA in {path}"


@dataclass
class Booted:
    guest: Guest
    ironic: FakeIronic
    lun: Path


@pytest.fixture(scope="module")
def dib(dib_image: tuple[Path, Path], request: pytest.FixtureRequest,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Booted]:
    """The dib image booted once for every test here, with a fake Ironic answering.

    Besides the virtio disk, one LUN (a 5 GiB file) is attached through two
    virtio-scsi controllers under the same WWN and serial: two paths, for
    multipathd to join. The console log is kept if any of these tests fails.
    """
    kernel, initrd = dib_image
    failed_before = request.session.testsfailed
    lun = tmp_path_factory.mktemp("dib-lun") / "lun.img"
    with open(lun, "wb") as f:
        f.truncate(LUN_SIZE)
    with FakeIronic() as ironic:
        spec = GuestSpec(
            name="dib", kernel=kernel, initrd=initrd, memory_mib=1024,
            disk_serial=DISK_SERIAL, disk_size=DISK_SIZE, forward_ports=(AGENT_PORT, 22),
            guest_address=STATIC, extra_args=two_scsi_paths(lun))
        spec.append = (f"console=ttyS0 {static_ip(spec.mac)} "
                       f"ipa-api-url=http://10.0.2.2:{ironic.port} ipa-insecure=1")
        with Guest(spec) as guest:
            yield Booted(guest, ironic, lun)
            if request.session.testsfailed > failed_before:
                guest.keep_artefacts()


def two_scsi_paths(lun: Path) -> tuple[str, ...]:
    """QEMU arguments attaching *lun* twice, on two controllers, as one WWN and serial."""
    args: list[str] = []
    for n in (0, 1):
        args += ["-device", f"virtio-scsi-pci,id=scsi{n}",
                 "-drive", f"file={lun},if=none,id=lun{n},format=raw,file.locking=off",
                 "-device", f"scsi-hd,drive=lun{n},bus=scsi{n}.0,wwn={LUN_WWN},"
                            f"serial={LUN_SERIAL},share-rw=on"]
    return tuple(args)


def static_ip(mac: str) -> str:
    """``ip=`` for the guest's NIC, named by its MAC (``-`` for ``:``)."""
    return f"ip={STATIC}::10.0.2.2:255.255.255.0::{mac.replace(':', '-')}:none"


def agent_api(dib: Booted) -> AgentAPI:
    """The agent at the heartbeat's callback URL, through hostfwd."""
    beat = dib.ironic.wait_for_heartbeat(timeout=1)
    return AgentAPI.from_heartbeat(dib.guest, beat.body, dib.ironic.agent_token)


def test_lookup_with_the_guest_mac(dib: Booted) -> None:
    lookup = dib.ironic.wait_for_lookup(timeout=600)
    assert dib.guest.spec.mac.lower() in [a.lower() for a in lookup.addresses]


def test_heartbeat_with_a_callback_url(dib: Booted) -> None:
    beat = dib.ironic.wait_for_heartbeat(timeout=300)
    assert beat.node_uuid == dib.ironic.node_uuid
    assert beat.body["agent_token"] == dib.ironic.agent_token
    url = urlsplit(beat.body["callback_url"])
    assert url.scheme in ("http", "https") and url.hostname == STATIC
    console = dib.guest.console_path.read_text(errors="replace")
    assert re.search(rf"lean-ipa-network: \S+ up {STATIC}/24", console), console[-3000:]
    assert re.search(r"lean-ipa-network: systemd-networkd: \S+ unmanaged", console)


def test_status_through_hostfwd(dib: Booted) -> None:
    dib.ironic.wait_for_heartbeat(timeout=300)
    assert agent_status(agent_api(dib))["version"] == "13.0.0"


def test_hardware_info_lists_the_virtio_disk(dib: Booted) -> None:
    dib.ironic.wait_for_heartbeat(timeout=300)
    virtio_disk(hardware_inventory(agent_api(dib)), dib.guest.spec)


def test_two_scsi_paths_are_one_multipath_disk(dib: Booted) -> None:
    dib.ironic.wait_for_heartbeat(timeout=300)
    disks = hardware_inventory(agent_api(dib))["disks"]
    lun = [d for d in disks if d["wwn"] == LUN_WWN]
    assert [d["name"][:8] for d in lun] == ["/dev/dm-"], disks
    # the paths' serial as udev names a SCSI disk with a WWN: its page 0x83 identifier
    # (ID_SERIAL_SHORT), not the page 0x80 serial QEMU was given
    assert lun[0]["size"] == LUN_SIZE and lun[0]["serial"] in (
        LUN_SERIAL, LUN_WWN.removeprefix("0x")), lun
    assert not [d for d in disks if d["name"].startswith("/dev/sd")], disks


def test_an_image_written_to_the_multipath_disk(dib: Booted, tmp_path: Path) -> None:
    """The root device (the LUN: the only disk over 4 GiB) gets a raw image through the
    map; the bytes arrive in the LUN's file."""
    dib.ironic.wait_for_heartbeat(timeout=300)
    image = tmp_path / "image.raw"
    with open(image, "wb") as f:
        f.truncate(4 << 20)
    subprocess.run(["sfdisk", "-q", str(image)], input="label: gpt\n,\n", text=True,
                   check=True, capture_output=True)  # a whole-disk image has a table
    with open(image, "r+b") as f:
        f.seek(1 << 20)
        f.write(os.urandom(2 << 20))
    payload = image.read_bytes()
    with ImageServer() as server:
        url = server.serve("/image.raw", image).replace("127.0.0.1", "10.0.2.2")
        result = agent_api(dib).command("standby.prepare_image", {"image_info": {
            "id": "mpath-image", "urls": [url], "disk_format": "raw",
            "os_hash_algo": "sha256", "os_hash_value": hashlib.sha256(payload).hexdigest()}})
    assert result["command_status"] == "SUCCEEDED", result
    with open(dib.lun, "rb") as f:
        # up to the backup GPT, which the agent moves to the end of the disk
        assert f.read(len(payload) - (1 << 20)) == payload[:-(1 << 20)]


def test_rescue_login_with_the_password(dib: Booted) -> None:
    """Last here: the agent stops serving once the node is rescued."""
    dib.ironic.wait_for_heartbeat(timeout=300)
    finalize_rescue(agent_api(dib), "dib-rescue-pw")
    # lean-ipa-rescue.path starts sshd (making host keys first) once /etc/.rescued exists.
    port = dib.guest.forwards[22]
    assert rescue_ssh(port, "dib-rescue-pw", "id -u; sudo -n id -u").split() == ["1999", "0"]
    with pytest.raises(AssertionError, match="Permission denied"):
        rescue_ssh(port, "not-the-password", "true", attempts=1)
    # minutes after boot: networkd took no DHCP lease beside the static address
    addresses = rescue_ssh(port, "dib-rescue-pw", "ip -4 -o addr show scope global")
    assert [line.split()[3] for line in addresses.splitlines()] == [f"{STATIC}/24"], addresses
