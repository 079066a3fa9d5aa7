# SPDX-License-Identifier: Apache-2.0
"""Automated cleaning driven by the real Ironic 39, our agent running as a host process.

enroll → manage → provide: Ironic moves the node to ``clean wait``, the test starts
the agent, which looks the node up, heartbeats, answers ``clean.get_clean_steps`` and
runs ``erase_devices_metadata`` on its only disk (a loop device), and the node ends
``available``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest

from tests.e2e import host
from tests.e2e.conftest import Flow, Ironic

pytestmark = pytest.mark.e2e


def make_gpt(disk: host.LoopDevice) -> None:
    subprocess.run(["sgdisk", "--clear", "--new=1:0:+8M", "--new=2:0:0", disk.device],
                   check=True, capture_output=True)


def gpt_headers(disk: host.LoopDevice) -> tuple[bool, bool]:
    """Whether the primary and the backup GPT header are on the disk."""
    primary = disk.read(8, 512) == b"EFI PART"
    backup = disk.read(8, disk.size - 512) == b"EFI PART"
    return primary, backup


def assert_clean_exit(flow: Flow, code: int | None) -> None:
    assert code == 0, flow.explain(f"the agent did not exit cleanly on SIGTERM (code {code})")


def test_clean_plain_twice(ironic_plain: Ironic, flow_factory: Callable[[Ironic], Flow]) -> None:
    """require_tls=False; a second provide with a fresh agent process works too."""
    flow = flow_factory(ironic_plain)
    flow.enroll()
    flow.manage()
    for run in (1, 2):
        make_gpt(flow.disk)
        assert gpt_headers(flow.disk) == (True, True)
        flow.client.set_provision_state(flow.uuid, "provide")
        flow.wait({"clean wait"}, timeout=60)
        agent = flow.start_agent(auto_tls=False)
        node = flow.wait({"available"})
        assert_clean_exit(flow, flow.stop_agent())
        assert node["last_error"] is None
        assert gpt_headers(flow.disk) == (False, False), flow.explain(
            f"run {run}: erase_devices_metadata left a GPT header on {flow.disk.device}")
        assert f"http://127.0.0.1:{agent.port}" in "\n".join(
            flow.ironic.service.log_lines(flow.uuid)), flow.explain("no plain callback_url")
        if run == 1:
            flow.manage()


def test_clean_auto_tls(ironic_tls: Ironic, flow_factory: Callable[[Ironic], Flow]) -> None:
    """require_tls=True (Ironic's default): the agent serves HTTPS with its own certificate.

    The API URL comes from the kernel-command-line-style parameters this time.
    """
    flow = flow_factory(ironic_tls)
    flow.enroll()
    flow.manage()
    make_gpt(flow.disk)
    flow.client.set_provision_state(flow.uuid, "provide")
    flow.wait({"clean wait"}, timeout=60)
    agent = flow.start_agent(auto_tls=True, use_config_api_url=False,
                             cmdline=f"ipa-api-url={flow.ironic.service.url} nomodeset")
    node = flow.wait({"available"})
    assert_clean_exit(flow, flow.stop_agent())
    assert node["last_error"] is None
    assert gpt_headers(flow.disk) == (False, False), flow.explain("GPT header survived")
    assert f"https://127.0.0.1:{agent.port}" in "\n".join(
        flow.ironic.service.log_lines(flow.uuid)), flow.explain("no https callback_url")
