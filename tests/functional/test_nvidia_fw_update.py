# SPDX-License-Identifier: Apache-2.0
"""NVIDIA NIC firmware updates end to end: fake lspci/mstflint/mstconfig/mstfwreset
(tests/fakebin, replaying tests/samples/mstflint) stand for a machine with a
ConnectX-5 and a ConnectX-6 card; the firmware file comes over HTTP from 127.0.0.1.
Outcomes are read back through the fakes' own query output."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from ironic_python_agent import run
from ironic_python_agent.hardware_managers.nvidia import nvidia_fw_update as fw
from tests.hwfixtures import FAKEBIN, hardware_conf, reset_hardware
from tests.imageserver import Behaviour, ImageServer

CX6 = "MT_0000000228"


@pytest.fixture(autouse=True)
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    reset_hardware()
    hardware_conf()
    monkeypatch.setenv("PATH", f"{FAKEBIN}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_HW_STATE", str(tmp_path / "state"))
    monkeypatch.delenv("FAKE_HW_SCENARIO", raising=False)
    yield
    reset_hardware()


def firmware(tmp_path: Path, body: bytes = b"FAKE-FW ConnectX6 20.35.1012\n" * 4096) -> Path:
    path = tmp_path / "fw_20_35_1012.bin"
    path.write_bytes(body)
    return path


def image(url: str, path: Path, **changes: str) -> dict[str, str]:
    return {"url": url, "checksum": hashlib.sha256(path.read_bytes()).hexdigest(),
            "checksumType": "sha256", "componentFlavor": CX6, "version": "20.35.1012",
            **changes}


def device(pci: str) -> dict[str, str]:
    return fw.query_device(pci)


def test_image_is_downloaded_checked_and_burnt_once_per_card(tmp_path: Path,
                                                             server: ImageServer) -> None:
    path = firmware(tmp_path)
    url = server.serve("/fw/fw_20_35_1012.bin", path, Behaviour())
    other = image(url, path, componentFlavor="MT_0000000999")  # no such card here
    fw.update_nvidia_nic_firmware_image([image(url, path), other])
    # burnt on the ConnectX-6 (both functions are one card), pending until a reset
    assert device("0000:06:00.0") == {"fw_ver": "20.35.1012", "running_fw_ver": "20.34.1002",
                                      "psid": CX6}
    assert device("0000:06:00.1")["fw_ver"] == "20.35.1012"
    assert device("0000:03:00.0") == {"fw_ver": "16.35.1012", "psid": "MT_0000000652"}
    assert len(server.requests("/fw/fw_20_35_1012.bin")) == 1
    # the same version again: downloaded and checked, nothing burnt (the fake would fail)
    fw.update_nvidia_nic_firmware_image([image(url, path)])
    assert device("0000:06:00.0")["running_fw_ver"] == "20.34.1002"


def test_a_pending_image_is_activated_before_burning(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_HW_SCENARIO", "mstflint=pending")
    path = firmware(tmp_path)
    # 20.34.1002 is burnt and waits for a reset (20.33.1012 runs); the fake refuses to
    # burn over a pending image, so this only succeeds with the reset first
    assert device("0000:06:00.0")["running_fw_ver"] == "20.33.1012"
    fw.update_nvidia_nic_firmware_image([image(path.as_uri(), path)])
    assert device("0000:06:00.0") == {"fw_ver": "20.35.1012", "running_fw_ver": "20.34.1002",
                                      "psid": CX6}
    assert path.exists()  # file:// images are copied, not moved away


@pytest.mark.parametrize("changes, error, complaint", [
    ({"checksum": "0" * 64}, fw.MismatchChecksumError, "Mismatch provided checksum"),
    ({"version": "20.36.1010"}, fw.MismatchFWVersion, "20.36.1010 does not match"),
])
def test_a_wrong_image_is_refused_before_burning(tmp_path: Path, server: ImageServer,
                                                 changes, error, complaint) -> None:
    path = firmware(tmp_path)
    url = server.serve("/fw.bin", path, Behaviour())
    with pytest.raises(error, match=complaint):
        fw.update_nvidia_nic_firmware_image([image(url, path, **changes)])
    assert device("0000:06:00.0")["fw_ver"] == "20.34.1002"


def test_a_file_that_is_no_firmware_fails_naming_the_tool(tmp_path: Path,
                                                          server: ImageServer) -> None:
    path = firmware(tmp_path, b"<html>404</html>")
    url = server.serve("/fw.bin", path, Behaviour())
    with pytest.raises(run.CommandError, match="mstflint -i .* query: exit code 1"):
        fw.update_nvidia_nic_firmware_image([image(url, path)])


def test_http_errors_and_other_schemes(tmp_path: Path, server: ImageServer) -> None:
    path = firmware(tmp_path)
    url = server.serve("/gone.bin", path, Behaviour(status=404))
    with pytest.raises(Exception, match="404"):
        fw.update_nvidia_nic_firmware_image([image(url, path)])
    with pytest.raises(fw.InvalidURLScheme, match="ftp is not supported"):
        fw.update_nvidia_nic_firmware_image([image("ftp://127.0.0.1/fw.bin", path)])


def test_settings_are_validated_then_set_per_function(tmp_path: Path) -> None:
    settings = [{"deviceID": "101B",
                 "globalConfig": {"NUM_OF_VFS": 16, "SRIOV_EN": True},
                 "function0Config": {"PF_TOTAL_SF": 500},
                 "function1Config": {"PF_TOTAL_SF": 600}},
                {"deviceID": "1021", "globalConfig": {"SRIOV_EN": True}}]  # not here
    fw.update_nvidia_nic_firmware_settings(settings)
    f0 = fw.parse_mstconfig_query(run.run(["mstconfig", "-d", "0000:06:00.0", "q"]).stdout)
    f1 = fw.parse_mstconfig_query(run.run(["mstconfig", "-d", "0000:06:00.1", "q"]).stdout)
    assert (f0["NUM_OF_VFS"], f0["SRIOV_EN"], f0["PF_TOTAL_SF"]) == ("16", "True(1)", "500")
    assert (f1["NUM_OF_VFS"], f1["PF_TOTAL_SF"]) == ("0", "600")  # global: first function
    state = json.loads((tmp_path / "state" / "mstconfig.json").read_text())
    assert set(state) == {"0000:06:00.0", "0000:06:00.1"}  # the ConnectX-5 untouched


def test_unsupported_settings_change_nothing(tmp_path: Path) -> None:
    with pytest.raises(fw.UnSupportedConfigByMstflintPackage, match="NO_SUCH_OPTION"):
        fw.update_nvidia_nic_firmware_settings(
            [{"deviceID": "101b", "globalConfig": {"SRIOV_EN": True, "NO_SUCH_OPTION": 1}}])
    with pytest.raises(fw.UnSupportedConfigByFW, match=r"SIZE\[8\] for device 0000:06:00.0"):
        fw.update_nvidia_nic_firmware_settings(
            [{"deviceID": "101b", "function0Config": {"ESWITCH_HAIRPIN_TOT_BUFFER_SIZE[8]": 4}}])
    assert not (tmp_path / "state" / "mstconfig.json").exists()


def test_missing_tools_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # none of the four
    with pytest.raises(fw.FirmwareToolsMissing,
                       match="mstflint, mstconfig, mstfwreset, lspci not found"):
        fw.update_nvidia_nic_firmware_image([])
    with pytest.raises(fw.FirmwareToolsMissing):
        fw.update_nvidia_nic_firmware_settings([])
