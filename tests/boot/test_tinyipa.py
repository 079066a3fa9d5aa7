# SPDX-License-Identifier: Apache-2.0
"""./build.sh tinyipa, then boot the image in QEMU against a fake Ironic."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import signal
import stat
import subprocess
from pathlib import Path

import pytest

from tests.boot.agent_checks import (AgentAPI, check_booted_agent, lookup_and_heartbeat,
                                     rescue_ssh)
from tests.boot.qemu import Guest, GuestSpec
from tests.fake_ironic import FakeIronic
from tests.tinyipa_build import ensure_tinyipa
from tinyipa import cpio, elf, stub

TOP = Path(__file__).resolve().parents[2]
OUT = Path(os.environ.get("LEAN_IPA_OUT", TOP / "out"))
IMAGE = OUT / "tinyipa"
DISK_SIZE = 8 << 30  # agents ignore disks under 4 GiB as root devices


# -- the artefacts --------------------------------------------------------------------


@pytest.mark.build
def test_outputs_checksums_and_manifest(tinyipa_image: tuple[Path, Path]) -> None:
    sums = dict(reversed(line.split("  ")) for line in
                (IMAGE / "sha256sums").read_text().splitlines())
    for path in tinyipa_image:
        assert sums[path.name] == hashlib.sha256(path.read_bytes()).hexdigest()
    manifest = (IMAGE / "tinyipa.manifest").read_text().splitlines()
    kinds = {line.split()[0] for line in manifest}
    assert {"kernel", "input", "deb", "python"} <= kinds
    assert any(line.startswith("deb busybox ") for line in manifest)
    assert any(line.startswith("deb linux-image-") for line in manifest)
    assert any(line.startswith("python lean-ipa 13.0.0") for line in manifest)
    assert manifest == sorted(manifest[:1]) + manifest[1:]  # kernel line first, stable
    assert (IMAGE / "build.log").stat().st_size > 0


@pytest.mark.build
def test_image_layout(tinyipa_files: dict[str, cpio.Entry]) -> None:
    init = tinyipa_files["init"]
    assert stat.S_ISREG(init.mode) and init.mode & 0o111
    assert init.data.startswith(b"#!/bin/sh")
    assert stat.S_ISCHR(tinyipa_files["dev/console"].mode)
    assert tinyipa_files["dev/console"].rdev == (5, 1)
    for link, target in (("bin", "usr/bin"), ("lib", "usr/lib"), ("sbin", "usr/sbin")):
        assert tinyipa_files[link].data.decode() == target
    for program in ("usr/bin/ironic-python-agent", "usr/bin/python3.11", "usr/bin/lsblk",
                    "usr/sbin/parted", "usr/sbin/sgdisk",
                    "usr/sbin/dmidecode", "usr/bin/ipmitool", "usr/sbin/nvme",
                    "usr/sbin/hdparm", "usr/bin/efibootmgr", "usr/sbin/mdadm",
                    "usr/bin/ip", "usr/bin/openssl", "usr/bin/udevadm", "usr/bin/busybox"):
        assert program in tinyipa_files, program
    # qemu-img only with --qemu-img (the agent streams raw, qcow2 and vmdk itself)
    assert "usr/bin/qemu-img" not in tinyipa_files
    # dropbear is there for rescue; no debug login by default (no keys, no root password)
    assert "usr/sbin/dropbear" in tinyipa_files
    assert "root/.ssh/authorized_keys" not in tinyipa_files
    names = set(tinyipa_files)
    for pruned in ("usr/lib/python3.11/tkinter", "usr/lib/python3.11/idlelib",
                   "usr/lib/python3.11/ensurepip", "usr/lib/python3.11/test"):
        assert pruned not in names
    assert "usr/lib/python3.11/os.pyc" in names
    modules = [n for n in names if n.startswith("usr/lib/modules/") and ".ko" in n]
    for wanted in ("virtio_net", "virtio_blk", "ahci", "nvme", "e1000e", "ext4", "vfat",
                   "isofs"):
        assert any(f"/{wanted}.ko" in m for m in modules), wanted
    assert any(n.endswith("/modules.dep") for n in names)


@pytest.mark.build
def test_host_ca_not_in_image(tinyipa_files: dict[str, cpio.Entry]) -> None:
    """Certificates only the build host trusts (e.g. a proxy's CA) stay out."""
    def certs(pem: str) -> set[str]:
        return {"".join(block.split("-----")[0].split())
                for block in pem.split("-----BEGIN CERTIFICATE-----")[1:]}

    image_bundle = tinyipa_files["etc/ssl/certs/ca-certificates.crt"].data.decode()
    host = Path("/etc/ssl/certs/ca-certificates.crt")
    host_only = certs(host.read_text()) - certs(image_bundle) if host.exists() else set()
    for local in Path("/usr/local/share/ca-certificates").glob("*.crt"):
        host_only |= certs(local.read_text())
    blob = b"".join(e.data for e in tinyipa_files.values())
    for cert in host_only:
        der = base64.b64decode(cert)
        marker = base64.b64encode(der[-60:-12])  # from the signature: unique to the cert
        assert marker not in blob.replace(b"\n", b""), "host CA found in the image"


@pytest.fixture(scope="session")
def tinyipa_root(tinyipa_files: dict[str, cpio.Entry],
                 tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The initramfs unpacked (plus /dev/null), for running its programs in a chroot."""
    return unpack(tinyipa_files, tmp_path_factory.mktemp("tinyipa-root"))


@pytest.fixture(scope="session")
def qemu_img_image() -> tuple[Path, Path]:
    """The image built with --qemu-img (beside the default one)."""
    try:
        return ensure_tinyipa(OUT, "tinyipa-qemu-img", ("--qemu-img",))
    except RuntimeError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def qemu_img_files(qemu_img_image: tuple[Path, Path]) -> dict[str, cpio.Entry]:
    data = subprocess.run(cpio.decompress_command(qemu_img_image[1]), check=True,
                          stdout=subprocess.PIPE).stdout
    return {entry.name: entry for entry in cpio.read_entries(data)}


@pytest.fixture(scope="session")
def qemu_img_root(qemu_img_files: dict[str, cpio.Entry],
                  tmp_path_factory: pytest.TempPathFactory) -> Path:
    return unpack(qemu_img_files, tmp_path_factory.mktemp("tinyipa-qemu-img-root"))


def unpack(files: dict[str, cpio.Entry], root: Path) -> Path:
    for name, entry in sorted(files.items()):
        path = root / name
        if stat.S_ISDIR(entry.mode):
            path.mkdir(parents=True, exist_ok=True)
        elif stat.S_ISLNK(entry.mode):
            path.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(entry.data.decode(), path)
        elif stat.S_ISREG(entry.mode):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(entry.data)
            path.chmod(stat.S_IMODE(entry.mode))
    (root / "dev").mkdir(exist_ok=True)
    os.mknod(root / "dev/null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    return root


def in_image(root: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["chroot", str(root), *argv], capture_output=True, text=True,
                          timeout=120, env={"PATH": "/usr/sbin:/usr/bin", "LANG": "C.UTF-8"})


@pytest.mark.build
def test_tools_run_in_the_image(tinyipa_root: Path) -> None:
    """Run the tools and the agent's imports in the unpacked initramfs (a chroot)."""
    checks = [["lsblk", "--version"], ["parted", "--version"],
              ["sgdisk", "-V"], ["ipmitool", "-V"], ["nvme", "version"], ["hdparm", "-V"],
              ["dmidecode", "-V"], ["mdadm", "-V"], ["efibootmgr", "--version"],
              ["openssl", "version"], ["udevadm", "--version"], ["ip", "-V"],
              ["modprobe", "-V"], ["smartctl", "-V"], ["mcopy", "-V"],
              ["mdir", "-V"],
              ["python3", "-c", "import ironic_python_agent.cmd.agent, ssl, yaml"],
              # zstd images decode through the image's libzstd (no zstd program)
              ["python3", "-c", "from ironic_python_agent import zstd; assert zstd.available()"],
              # the codecs kept: JSON in UTF-16, IDNA host names, Latin-1
              ["python3", "-c", "import json; assert json.loads('[1]'.encode('utf-16')) == [1];"
               " 'bücher.example'.encode('idna'); b'\\xe9'.decode('latin-1')"]]
    for argv in checks:
        proc = in_image(tinyipa_root, *argv)
        assert proc.returncode == 0, f"{argv}: {proc.stderr[-500:]}"
    # mtools reads FAT names through iconv's code page 850 (an ESP at an offset, as
    # install_bootloader reads it; without the gconv module: "Cannot initialize")
    esp, disk = tinyipa_root / "tmp/esp.img", tinyipa_root / "tmp/disk.img"
    with open(esp, "wb") as f:
        f.truncate(32 << 20)
    subprocess.run(["mkfs.vfat", str(esp)], check=True, capture_output=True)
    subprocess.run(["mmd", "-i", str(esp), "::/EFI"], check=True)
    disk.write_bytes(bytes(1 << 20) + esp.read_bytes())
    proc = in_image(tinyipa_root, "mdir", "-/", "-b", "-i", "/tmp/disk.img@@1048576", "::/")
    assert proc.returncode == 0 and "::/EFI/" in proc.stdout, proc.stderr


# -- stub libraries (tinyipa/stub.py) -------------------------------------------------------


STUBBED = {"libfreeipmi.so.17": "usr/bin/ipmitool",
           "libdbus-1.so.3": "usr/lib/x86_64-linux-gnu/libnvme-mi.so.1"}
# --qemu-img adds qemu-img and its gnutls stub
QEMU_IMG_STUBBED = {**STUBBED, "libgnutls.so.30": "usr/bin/qemu-img"}


@pytest.mark.build
def test_stubs_replace_the_libraries(tinyipa_files: dict[str, cpio.Entry]) -> None:
    check_stubs(IMAGE / "tinyipa.manifest", tinyipa_files, STUBBED)


@pytest.mark.build
def test_qemu_img_option_stubs_gnutls(qemu_img_files: dict[str, cpio.Entry]) -> None:
    assert "usr/bin/qemu-img" in qemu_img_files
    check_stubs(IMAGE / "tinyipa-qemu-img.manifest", qemu_img_files, QEMU_IMG_STUBBED)


def check_stubs(manifest_path: Path, tinyipa_files: dict[str, cpio.Entry],
                expected: dict[str, str]) -> None:
    manifest = manifest_path.read_text().splitlines()
    stubs = {line.split()[1]: line for line in manifest if line.startswith("stub ")}
    assert set(stubs) == set(expected)
    if "libgnutls.so.30" in expected:
        assert "qemu-img TLS" in stubs["libgnutls.so.30"]
    for soname in expected:
        lib = tinyipa_files[f"usr/lib/x86_64-linux-gnu/{soname}"]
        assert stat.S_ISREG(lib.mode) and len(lib.data) < 64 * 1024, soname
        assert b"is a stub in this image" in lib.data
    # the real libraries' own dependencies are gone with them
    names = {n.rsplit("/", 1)[-1] for n in tinyipa_files}
    for gone in ("libunistring.so.2", "libp11-kit.so.0", "libidn2.so.0", "libtasn1.so.6",
                 "libgcrypt.so.20", "libgpg-error.so.0", "libsystemd.so.0"):
        assert gone not in names, gone
    assert not any(line.startswith(("deb libgnutls30 ", "deb libfreeipmi17 ",
                                    "deb libdbus-1-3 ")) for line in manifest)


@pytest.mark.build
def test_qemu_img_converts_with_stubbed_gnutls(qemu_img_root: Path) -> None:
    """qemu-img starts (gnutls_global_init succeeds) and converts a qcow2 with
    zlib-compressed clusters to the same bytes the host's qemu-img started from."""
    work = qemu_img_root / "tmp"
    raw = os.urandom(3 << 20) + bytes(2 << 20) + b"tinyipa stub test\n" * (1 << 16)
    (work / "source.raw").write_bytes(raw)
    subprocess.run(["qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2",
                    str(work / "source.raw"), str(work / "image.qcow2")], check=True)
    info = in_image(qemu_img_root, "qemu-img", "info", "--output=json", "/tmp/image.qcow2")
    assert info.returncode == 0, info.stderr
    facts = json.loads(info.stdout)
    assert facts["format"] == "qcow2" and facts["virtual-size"] == len(raw)
    conv = in_image(qemu_img_root, "qemu-img", "convert", "-f", "qcow2", "-O", "raw",
                    "/tmp/image.qcow2", "/tmp/out.raw")
    assert conv.returncode == 0, conv.stderr
    assert "tinyipa:" not in info.stderr + conv.stderr
    assert (work / "out.raw").read_bytes() == raw


@pytest.mark.build
def test_qemu_img_reads_luks_but_cannot_create_it(qemu_img_root: Path) -> None:
    """What the README says is missing: new encryption keys need gnutls_rnd."""
    secret = ["--object", "secret,id=s,data=tinyipa"]
    # The host's qemu-img times PBKDF2 with getrusage() and, on a busy VM, now
    # and then gives up ("Unable to get accurate CPU usage"): try again.
    for _ in range(8):
        host = subprocess.run(["qemu-img", "create", "-q", "-f", "luks", *secret, "-o",
                               "key-secret=s,iter-time=10", str(qemu_img_root / "tmp/host.luks"),
                               "1M"], capture_output=True, text=True)
        if host.returncode == 0 or "accurate CPU usage" not in host.stderr:
            break
    assert host.returncode == 0, host.stderr
    read = in_image(qemu_img_root, "qemu-img", "info", *secret, "--image-opts",
                    "driver=luks,key-secret=s,file.filename=/tmp/host.luks")
    assert read.returncode == 0 and "virtual size: 1 MiB" in read.stdout, read.stderr
    made = in_image(qemu_img_root, "qemu-img", "create", "-f", "luks", *secret, "-o",
                    "key-secret=s,iter-time=10", "/tmp/image.luks", "1M")
    assert made.returncode == -signal.SIGABRT
    assert ("tinyipa: libgnutls.so.30 is a stub in this image (qemu-img TLS and creating "
            "encrypted images are not available); gnutls_rnd was called") in made.stderr


@pytest.mark.build
def test_ipmitool_open_works_and_free_fails_loudly(tinyipa_root: Path) -> None:
    opened = in_image(tinyipa_root, "ipmitool", "-I", "open", "mc", "info")
    assert opened.returncode == 1
    assert "Could not open device" in opened.stderr and "stub" not in opened.stderr
    free = in_image(tinyipa_root, "ipmitool", "-I", "free", "mc", "info")
    assert free.returncode == -signal.SIGABRT
    assert ("tinyipa: libfreeipmi.so.17 is a stub in this image (ipmitool -I free is not "
            "available; use -I open); ipmi_ctx_create was called") in free.stderr


@pytest.mark.build
def test_nvme_never_reaches_dbus(tinyipa_root: Path) -> None:
    """Only libnvme-mi's nvme_mi_scan_mctp() calls D-Bus: nothing in the image
    may import it, and nvme's device commands run without the stub."""
    version = in_image(tinyipa_root, "nvme", "version")
    assert version.returncode == 0 and "libnvme version" in version.stdout
    missing = in_image(tinyipa_root, "nvme", "id-ctrl", "/dev/nvme0", "-o", "json")
    assert missing.returncode != 0 and "tinyipa:" not in missing.stderr
    elves = [str(p) for p in stub.elf_files(tinyipa_root)]
    dump = subprocess.run(["readelf", "--dyn-syms", "-W", *elves], capture_output=True,
                          text=True, check=True).stdout
    users = [path for path, syms in stub.parse_dynsyms(dump).items()
             if any(s.name == "nvme_mi_scan_mctp" and not s.defined for s in syms)]
    assert users == []
    # A program added later that needs a stubbed library must be looked at
    # (does it call into it?): the stubs are known to be safe for these users only.
    for soname, user in STUBBED.items():
        users = [os.path.relpath(path, tinyipa_root) for path in elves
                 if soname in getattr(elf.read_dynamic(Path(path)), "needed", ())]
        assert len(users) == 1 and users[0].startswith(user), (soname, users)


# -- booting ------------------------------------------------------------------------------


@pytest.mark.boot
@pytest.mark.parametrize("memory_mib", [512, 384])
def test_boot_lookup_heartbeat_inventory(tinyipa_image: tuple[Path, Path],
                                         memory_mib: int) -> None:
    kernel, initramfs = tinyipa_image
    with FakeIronic() as ironic:
        spec = GuestSpec(
            name=f"tinyipa-{memory_mib}m", kernel=kernel, initrd=initramfs,
            memory_mib=memory_mib, disk_size=DISK_SIZE, forward_ports=(9999, 22),
            append=(f"console=ttyS0 panic=-1 ipa-api-url=http://10.0.2.2:{ironic.port} "
                    "ipa-insecure=1"))
        if memory_mib == 512:  # a VLAN on the NIC named by its MAC, made before lookup
            spec = dataclasses.replace(
                spec, append=f"{spec.append} ipa-enable-vlan-interfaces={spec.mac}.100")
        with Guest(spec) as guest:
            beat = lookup_and_heartbeat(guest, ironic, lookup_timeout=300, heartbeat_timeout=180)
            assert beat.get("agent_version")
            api = AgentAPI.from_heartbeat(guest, beat, ironic.agent_token)
            inventory = check_booted_agent(api, spec, check_serial=False)
            if memory_mib == 512:
                vlans = [i for i in inventory["interfaces"]
                         if i["name"].endswith(".100") and i["mac_address"] == spec.mac]
                assert len(vlans) == 1, inventory["interfaces"]

            if memory_mib == 384:
                # busybox poweroff only signals PID 1: /init must act on it.
                result = api.command("standby.power_off")
                assert result["command_status"] in ("RUNNING", "SUCCEEDED"), result
                guest.wait_for_console(r"tinyipa: \[[\d.]+\] powering off", timeout=120)
                assert guest.proc is not None
                guest.proc.wait(timeout=120)  # QEMU exits when the guest powers off
            if memory_mib == 512:
                # Rescue: the agent exits cleanly and /init lets the rescue user in.
                hashed = subprocess.run(["openssl", "passwd", "-6", "rescue-me"], check=True,
                                        capture_output=True, text=True).stdout.strip()
                result = api.command("rescue.finalize_rescue",
                                     {"rescue_password": hashed, "hashed": True})
                assert result["command_status"] == "SUCCEEDED", result
                guest.wait_for_console(r"rescue mode: SSH for user 'rescue'", timeout=120)
                assert rescue_ssh(guest.forwards[22], "rescue-me", "id -u") == "0"
                with pytest.raises(AssertionError, match="Permission denied"):
                    rescue_ssh(guest.forwards[22], "wrong-password", "id -u", attempts=1)
