# SPDX-License-Identifier: Apache-2.0
"""execute_bootc_install on a loop disk, with tests/fakebin/podman as the container engine.

The fake pulls into a remembered store and, for ``bootc install to-disk``,
partitions the device as bootc does; the agent then finds the partitions and
adds the config drive. Without podman the step is refused before the disk is
touched.
"""

from __future__ import annotations

import base64
import gzip
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ironic_python_agent import bootc, configdrive, errors
from ironic_python_agent.extensions.standby import StandbyExtension
from ironic_python_agent.hardware.generic import GenericHardwareManager
from tests.hwfixtures import MiB, fake_tools_env, hardware_conf, loop_device, reset_hardware

SOURCE = "oci://registry.example.test/tenant/os:42"
DISK = 1400 * MiB


@pytest.fixture
def disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    reset_hardware()
    hardware_conf()
    monkeypatch.setattr(bootc, "NO_PIVOT_ROOT", str(tmp_path / "containers.conf.d/01-ipa.conf"))
    with loop_device(tmp_path, DISK) as dev:
        yield dev
    reset_hardware()


def fakes(monkeypatch: pytest.MonkeyPatch, state: Path, scenario: str = "") -> None:
    for key, value in fake_tools_env(state, scenario).items():
        monkeypatch.setenv(key, value)


def install(dev: str, **kwargs: object) -> tuple[StandbyExtension, object]:
    ext = StandbyExtension()
    ext.device_finder = lambda: dev
    result = ext.execute_bootc_install(image_source=SOURCE, **kwargs)
    result.join(60)
    return ext, result


def test_bootc_install_partitions_the_disk_and_adds_the_config_drive(
        disk: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fakes(monkeypatch, tmp_path / "state")
    tree = tmp_path / "cd/openstack/latest"
    tree.mkdir(parents=True)
    (tree / "meta_data.json").write_text('{"uuid": "n1"}')
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-V", "config-2", "-r", "-J",
                    "-o", str(tmp_path / "cd.iso"), str(tmp_path / "cd")], check=True)
    drive = base64.b64encode(gzip.compress((tmp_path / "cd.iso").read_bytes())).decode()
    secret = base64.standard_b64encode(b"dXNlcjpwYXNz").decode()

    ext, result = install(disk, pull_secret=secret, configdrive=drive,
                          instance_info={"bootc_authorized_keys": "ssh-ed25519 AAAA t@x"})
    assert result.command_status == "SUCCEEDED", result.command_error
    assert result.command_result == {
        "result": f"execute_bootc_install: Container image ({SOURCE}) written to device {disk}"}

    state = json.loads((tmp_path / "state/podman.json").read_text())
    assert state["installed"]["ref"] == "registry.example.test/tenant/os:42"
    assert state["installed"]["root_mib"] == 1400 - bootc.RESERVED_MIB
    # The registry saw the secret; the tenant's container could not read it.
    assert state["auth"] == {"auths": {"registry.example.test": {"auth": "dXNlcjpwYXNz"}}}
    assert state["secret_visible_to_container"] is False
    assert not Path(state["authfile"]).exists()

    table = configdrive.read_partition_table(disk)
    assert table is not None and [p.name for p in table.partitions] == [
        "EFI-SYSTEM", "root", "config-2"]
    uuids = ext.get_partition_uuids().command_result
    assert uuids["root uuid"] == configdrive.disk_identifier(disk)
    assert uuids["partitions"]["configdrive"] == configdrive.partition_path(disk, 3)
    assert Path(bootc.NO_PIVOT_ROOT).read_text() == "[engine]\nno_pivot_root = true\n"


@pytest.mark.parametrize("scenario, error, words", [
    ("podman=no-bootc", errors.ImageDownloadError, "no bootc binary"),
    ("podman=pull-fails", errors.ImageDownloadError, "unauthorized"),
])
def test_bootc_install_failures_name_the_cause(
        disk: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        scenario: str, error: type, words: str) -> None:
    fakes(monkeypatch, tmp_path / "state", scenario)
    _, result = install(disk)
    assert result.command_status == "FAILED"
    assert isinstance(result.command_error, error) and words in str(result.command_error)
    assert configdrive.read_partition_table(disk) is None  # nothing was written


def test_without_podman_the_step_is_refused_before_the_disk(
        disk: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    with open(disk, "r+b") as f:
        f.write(b"old data" * 512)
    with monkeypatch.context() as only_here:  # the loop device's teardown needs losetup
        only_here.setenv("PATH", str(empty))
        _, result = install(disk)
    assert result.command_status == "FAILED"
    assert "needs podman" in str(result.command_error)
    with open(disk, "rb") as f:
        assert f.read(4096) == b"old data" * 512


def test_disabled_bootc_deploy_is_refused(disk: str, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    hardware_conf(disable_bootc_deploy=True)
    fakes(monkeypatch, tmp_path / "state")
    _, result = install(disk)
    assert "administratively disabled" in str(result.command_error)


def test_bootc_is_a_deploy_and_service_step() -> None:
    hwm = GenericHardwareManager()
    for steps in (hwm.get_deploy_steps({}, []), hwm.get_service_steps({}, [])):
        step = next(s for s in steps if s["step"] == "execute_bootc_install")
        assert step["interface"] == "deploy" and step["priority"] == 0
