# SPDX-License-Identifier: Apache-2.0
"""clean_uefi_nvram against a fake efibootmgr replaying captured ``-v`` output.

The fake keeps its NVRAM in a state directory; the tests read what is left
with ``efibootmgr -v`` afterwards.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from ironic_python_agent import efi, errors
from ironic_python_agent.hardware import nvram, steps
from tests.hwfixtures import fake_tools_env, hardware_conf, reset_hardware, sample


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch) -> Iterator[None]:
    reset_hardware()
    for key, value in fake_tools_env(tmp_path / "state").items():
        monkeypatch.setenv(key, value)
    hardware_conf(allow=[])
    yield
    reset_hardware()


def left() -> dict[str, str]:
    out = subprocess.run(["efibootmgr", "-v"], check=True, capture_output=True).stdout
    return {e.number: e.label for e in efi.parse_efibootmgr(nvram.decode_output(out))}


def run_step(kind: str = "clean", **args) -> dict:
    step = {"step": "clean_uefi_nvram", "interface": "deploy", "priority": 0, "args": args}
    return steps.execute_step(kind, step, {"properties": {}}, [])


def test_default_patterns_remove_disk_shim_and_grub_entries() -> None:
    result = run_step()
    assert result["clean_result"] is None
    # HD(...) entries and the SATA-path shim entry go; PXE, shell and BBS stay.
    assert left() == {"0002": "UEFI: Built-in EFI Shell", "0003": "Hard Drive",
                      "0004": "UEFI: PXE IPv4 Intel(R) Ethernet Controller X710 for 10GbE SFP+",
                      "0005": "UEFI: PXE IPv6 Intel(R) Ethernet Controller X710 for 10GbE SFP+"}


def test_custom_patterns_as_a_deploy_step() -> None:
    run_step("deploy", match_patterns=[r"MAC\(", "bootmgfw"])
    assert set(left()) == {"0000", "0001", "0002", "0003", "0007"}


def test_utf16_output_is_understood(monkeypatch) -> None:
    monkeypatch.setenv("FAKE_HW_SCENARIO", "efibootmgr=utf16")
    run_step(match_patterns=["centos"])
    assert "0007" not in left() and len(left()) == 7


@pytest.mark.parametrize("patterns", ["^HD\\(", [1], ["(unclosed"]])
def test_bad_patterns_are_refused_before_anything_is_removed(patterns) -> None:
    with pytest.raises(errors.InvalidCommandParamsError, match="match_patterns"):
        run_step(match_patterns=patterns)
    assert len(left()) == 8


def test_no_efi_variables_is_a_clear_failure(monkeypatch) -> None:
    monkeypatch.setenv("FAKE_HW_SCENARIO", "efibootmgr=no-efi")
    with pytest.raises(errors.CommandExecutionError, match="EFI variables are not supported"):
        run_step()


def test_failed_removal_names_the_entry(monkeypatch) -> None:
    monkeypatch.setenv("FAKE_HW_SCENARIO", "efibootmgr=delete-fails")
    with pytest.raises(errors.CommandExecutionError, match="-b 0000 -B"):
        run_step()


def test_parser_reads_every_entry_with_its_device_path() -> None:
    entries = efi.parse_efibootmgr(sample("efibootmgr", "server-v.txt"))
    assert [e.number for e in entries] == [f"000{i}" for i in range(8)]
    assert entries[0].path == "\\EFI\\debian\\shimx64.efi"
    assert entries[0].device_path.startswith("HD(1,GPT,6b0f4f1e")
    assert entries[7].device_path.startswith("PciRoot(0x0)/Pci(0x17,0x0)/Sata")
    # Older efibootmgr separated label and path with spaces only.
    spaced = efi.parse_efibootmgr("Boot0001* ubuntu HD(1,GPT,x,0x800,0x1)/File(\\EFI\\u.efi)")
    assert spaced[0].label == "ubuntu" and spaced[0].device_path.startswith("HD(1")


def test_listed_as_clean_and_deploy_step() -> None:
    for kind, abortable in (("clean", True), ("deploy", None)):
        listed = [s for m in steps.get_steps(kind, {}, [])[f"{kind}_steps"].values() for s in m]
        step = next(s for s in listed if s["step"] == "clean_uefi_nvram")
        assert step["priority"] == 0 and step["interface"] == "deploy"
        assert step.get("abortable") is abortable
        assert "match_patterns" in step["argsinfo"]
