# SPDX-License-Identifier: Apache-2.0
"""The inject_files deploy/service step on a loop disk with real file systems.

The disk (GPT) has an ESP (vfat, partition 1), a root file system (ext4 with
``/etc``, partition 2) and a config partition (ext4, label ``cfgdata``). The
step runs through the generic manager as Ironic drives it; the test mounts the
partitions itself afterwards and reads what landed there.
"""

from __future__ import annotations

import base64
import contextlib
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ironic_python_agent import errors
from ironic_python_agent.hardware import steps
from tests.hwfixtures import MiB, hardware_conf, reset_hardware

SIZE = 96 * MiB
# Some build hosts' kernels lack vfat (this one: no module); the ESP checks need it.
HAVE_VFAT = "\tvfat\n" in Path("/proc/filesystems").read_text()


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[str]:
    image = tmp_path / "disk.img"
    with open(image, "wb") as f:
        f.truncate(SIZE)
    sh("sgdisk", "-n1:0:+20M", "-t1:ef00", "-n2:0:+40M", "-n3:0:0", str(image))
    dev = sh("losetup", "--find", "--show", "--partscan", str(image)).strip()
    try:
        subprocess.run(["partx", "-a", dev], check=False, capture_output=True)
        sh("mkfs.vfat", "-n", "ESP", f"{dev}p1")
        sh("mkfs.ext4", "-q", "-F", "-L", "root", f"{dev}p2")
        sh("mkfs.ext4", "-q", "-F", "-L", "cfgdata", f"{dev}p3")
        with mounted(f"{dev}p2") as root:
            os.makedirs(f"{root}/etc/ssh")
            Path(f"{root}/etc/motd").write_text("old motd\n")
            os.chmod(f"{root}/etc/motd", 0o640)
            os.chown(f"{root}/etc/motd", 0, 4)
            Path(f"{root}/etc/stale.conf").write_text("remove me\n")
        yield dev
    finally:
        subprocess.run(["partx", "-d", dev], check=False, capture_output=True)
        subprocess.run(["losetup", "-d", dev], check=False, capture_output=True)


@pytest.fixture(autouse=True)
def _hardware() -> Iterator[None]:
    reset_hardware()
    yield
    reset_hardware()


@contextlib.contextmanager
def mounted(dev: str) -> Iterator[str]:
    where = tempfile.mkdtemp(prefix="inject-test-")
    sh("mount", dev, where)
    try:
        yield where
    finally:
        subprocess.run(["umount", where], check=True)
        os.rmdir(where)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def node(dev: str, files: list | None = None) -> dict:
    return {"uuid": "0a3c5d1e-1c7d-4a55-9d9b-1f0c3a7e9b11",
            "properties": {"inject_files": files or []},
            "instance_info": {"root_device": {"name": dev}}}


def run_step(dev: str, props: list | None, files: list | None, kind: str = "deploy") -> dict:
    hardware_conf(allow=[dev])
    step = {"step": "inject_files", "interface": "deploy", "priority": 0,
            "args": {"files": files} if files is not None else {}}
    return steps.execute_step(kind, step, node(dev, props), [])


def our_mounts() -> list[str]:
    return [line for line in Path("/proc/mounts").read_text().splitlines()
            if "/inject-" in line.split()[1] and "inject-test-" not in line]


def test_files_land_on_the_partition_by_number_label_and_root_search(disk: str) -> None:
    props = [{"path": "/etc/motd", "content": b64("welcome\n")}]
    files = [
        {"path": "/etc/ssh/sshd_config.d/10-ironic.conf", "content": b64("PermitRootLogin no\n"),
         "mode": 0o600, "dirmode": 0o700, "owner": 1000, "group": 1001},
        {"path": "/etc/stale.conf", "deleted": True},
        {"path": "/cloud.cfg", "partition": "LABEL=cfgdata", "content": b64("label data")},
        {"path": "/by-number/x.txt", "partition": 3, "content": b64("number data"),
         "dirmode": 0o750},
        {"path": "/by-dev.txt", "partition": f"{disk}p3", "content": b64("dev data")},
    ]
    result = run_step(disk, props, files)
    assert result["deploy_result"] is None
    assert our_mounts() == []
    with mounted(f"{disk}p2") as root:
        motd = os.stat(f"{root}/etc/motd")
        assert Path(f"{root}/etc/motd").read_text() == "welcome\n"
        # Rewritten in place: the old file's mode and owner stay.
        assert (motd.st_mode & 0o7777, motd.st_uid, motd.st_gid) == (0o640, 0, 4)
        conf = f"{root}/etc/ssh/sshd_config.d/10-ironic.conf"
        assert Path(conf).read_text() == "PermitRootLogin no\n"
        st = os.stat(conf)
        assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o600, 1000, 1001)
        assert os.stat(os.path.dirname(conf)).st_mode & 0o7777 == 0o700
        assert not os.path.exists(f"{root}/etc/stale.conf")
        assert not [n for n in os.listdir(f"{root}/etc") if n.startswith(".inject-")]
    with mounted(f"{disk}p3") as cfg:
        assert Path(f"{cfg}/cloud.cfg").read_text() == "label data"
        assert Path(f"{cfg}/by-dev.txt").read_text() == "dev data"
        assert Path(f"{cfg}/by-number/x.txt").read_text() == "number data"
        assert os.stat(f"{cfg}/by-number").st_mode & 0o7777 == 0o750


@pytest.mark.skipif(not HAVE_VFAT, reason="this kernel cannot mount vfat")
def test_esp_by_partition_number_and_label(disk: str) -> None:
    files = [{"path": "/EFI/ironic/boot.cfg", "partition": 1, "content": b64("esp data")},
             {"path": "/label.txt", "partition": "LABEL=ESP", "content": b64("by label")}]
    run_step(disk, None, files)
    with mounted(f"{disk}p1") as esp:
        assert Path(f"{esp}/EFI/ironic/boot.cfg").read_text() == "esp data"
        assert Path(f"{esp}/label.txt").read_text() == "by label"


def test_service_step_downloads_url_content_with_node_fields(disk: str, server, tmp_path) -> None:
    payload = tmp_path / "payload"
    payload.write_bytes(os.urandom(3 * MiB + 17))
    url = server.serve("/nodes/0a3c5d1e-1c7d-4a55-9d9b-1f0c3a7e9b11/blob", payload)
    template = url.replace("0a3c5d1e-1c7d-4a55-9d9b-1f0c3a7e9b11", "{node[uuid]}")
    run_step(disk, None, [{"path": "/etc/blob.bin", "content": template}], kind="service")
    with mounted(f"{disk}p2") as root:
        assert Path(f"{root}/etc/blob.bin").read_bytes() == payload.read_bytes()


def test_failed_download_keeps_the_old_file(disk: str, server) -> None:
    missing = server.url("/no-such-file")
    with pytest.raises(errors.CommandExecutionError, match="Cannot download"):
        run_step(disk, None, [{"path": "/etc/motd", "content": missing}])
    assert our_mounts() == []
    with mounted(f"{disk}p2") as root:
        assert Path(f"{root}/etc/motd").read_text() == "old motd\n"
        assert not [n for n in os.listdir(f"{root}/etc") if n.startswith(".inject-")]


def test_bad_files_are_refused_before_anything_is_written(disk: str) -> None:
    files = [{"path": "/etc/ok", "content": b64("x")},
             {"path": "/top-level", "content": b64("x")},
             {"path": "/etc/dir/", "content": b64("x")},
             {"path": "/etc/../../escape", "content": b64("x")},
             {"path": "/etc/y", "mode": "0644", "colour": "red"}]
    with pytest.raises(errors.InvalidCommandParamsError) as info:
        run_step(disk, None, files)
    text = str(info.value)
    for what in ("requires \"partition\"", "directories not supported", "'..' is not allowed",
                 "mode must be a number", "unexpected fields"):
        assert what in text
    with mounted(f"{disk}p2") as root:
        assert not os.path.exists(f"{root}/etc/ok")


def test_no_partition_with_the_directory_is_a_clear_error(disk: str) -> None:
    with pytest.raises(errors.DeviceNotFound, match="No partition found with path srv"):
        run_step(disk, None, [{"path": "/srv/www/index.html", "content": b64("x")}])
    with pytest.raises(errors.DeviceNotFound, match="LABEL=nosuchlabel"):
        run_step(disk, None, [{"path": "/x", "partition": "LABEL=nosuchlabel",
                               "content": b64("x")}])
    assert our_mounts() == []


def test_nothing_to_inject_does_not_need_a_disk() -> None:
    hardware_conf(allow=[])
    step = {"step": "inject_files", "interface": "deploy", "priority": 0, "args": {}}
    result = steps.execute_step("deploy", step, {"properties": {}}, [])
    assert result["deploy_result"] is None


def test_step_is_listed_for_deploy_and_service_with_the_configured_priority() -> None:
    conf = hardware_conf(allow=[])
    from oslo_config import cfg
    conf.register_opt(cfg.IntOpt("inject_files_priority", default=0))
    conf.set_override("inject_files_priority", 55)
    for kind in ("deploy", "service"):
        listed = [s for m in steps.get_steps(kind, {}, [])[f"{kind}_steps"].values() for s in m]
        step = next(s for s in listed if s["step"] == "inject_files")
        assert step["interface"] == "deploy"
        assert step["priority"] == 55
        assert set(step["argsinfo"]) == {"files", "verify_ca"}
