# SPDX-License-Identifier: Apache-2.0
"""Every program the agent runs is in buildlib/image-programs.toml, and every image
builder takes its packages from there."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

TOP = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(TOP))

from buildlib import programs  # noqa: E402
from tests.unit.test_host_programs import python_programs  # noqa: E402

AGENT = TOP / "agent" / "ironic_python_agent"
# Calls whose program is a parameter, not a literal: what they are called with.
INDIRECT = {"reboot", "poweroff"}  # extensions/standby.py power_action(action)


def agent_runs() -> dict[str, list[str]]:
    where: dict[str, list[str]] = {}
    for path in sorted(AGENT.rglob("*.py")):
        for prog, line in python_programs(path.read_text()).items():
            where.setdefault(prog, []).append(f"{path.relative_to(TOP)}:{line}")
    return where


def test_every_program_the_agent_runs_is_listed() -> None:
    table = programs.load()
    unlisted = {p: w for p, w in agent_runs().items() if p not in table}
    assert not unlisted, f"the agent runs these, missing from image-programs.toml: {unlisted}"
    assert INDIRECT <= set(table)
    assert "power_action" in (AGENT / "extensions/standby.py").read_text()


def test_every_listed_program_is_run_by_the_agent() -> None:
    """No dead entries (lshw was carried by the coreos container, and nothing ran it)."""
    stale = set(programs.load()) - set(agent_runs()) - INDIRECT
    assert not stale, f"listed but never run by the agent: {sorted(stale)}"


def test_entries_name_a_package_and_say_why_they_are_left_out() -> None:
    for name, entry in programs.load().items():
        assert entry["package"], name
        for image in programs.IMAGES:
            assert entry.get(image, "install") in ("install", "busybox", "none"), (name, image)
            if entry.get(image) == "none":
                assert entry.get("why"), f"{name}: left out of {image} without a why"
            if entry.get(image) == "busybox":
                assert image == "tinyipa", (name, image)


def test_coreos_container_gets_the_agent_programs() -> None:
    from coreos import build

    packages = build.container_packages()
    assert "mtools" in packages        # efi.py runs mcopy and mdir
    assert "lshw" not in packages      # nothing runs it
    assert set(programs.packages("coreos")) <= set(packages)


def test_tinyipa_gets_the_agent_programs() -> None:
    config = tomllib.loads((TOP / "tinyipa/tinyipa.toml").read_text())
    assert "mtools" in programs.packages("tinyipa")
    assert not set(programs.packages("tinyipa")) & {"systemd", "systemd-sysv"}
    assert "mkfs.vfat" in config["binaries"]  # the image's own programs stay there


def test_dib_element_block_is_generated_from_the_list() -> None:
    text = programs.DIB_YAML.read_text()
    assert programs.with_dib_block(text) == text, \
        "elements/lean-ipa-agent/package-installs.yaml is stale: python3 -m buildlib.programs --write"
    named = {line.split(":")[0] for line in text.splitlines() if line and line[0].isalnum()}
    assert set(programs.packages("dib")) <= named
