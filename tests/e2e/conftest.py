# SPDX-License-Identifier: Apache-2.0
"""Fixtures for the tests that drive the real Ironic 39 with our agent as a host process.

Logs (ironic.log, each agent's log and config) are kept under
``out/test-artifacts/e2e/`` whatever the outcome.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import host, ironic

ARTIFACTS = ironic.out_dir() / "test-artifacts" / "e2e"


@pytest.fixture(scope="session")
def e2e_artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


def _ironic(settings: ironic.IronicSettings, name: str, factory: pytest.TempPathFactory,
            artifacts: Path, log: str = "") -> Iterator[Ironic]:
    # State (sqlite, certificates) in a private temporary directory: two test sessions
    # may run at once on one machine. The log is copied to the artefacts at the end.
    service, client = ironic.start_ironic(settings, factory.mktemp(name))
    try:
        yield Ironic(service, client)
    finally:
        service.stop()
        with contextlib.suppress(OSError):
            shutil.copyfile(service.log, artifacts / (log or f"{name}.log"))


def vm_ironic(factory: pytest.TempPathFactory, artefacts: Path, name: str,
              **settings: Any) -> Iterator[Ironic]:
    """An Ironic for a module's QEMU nodes: its default ``require_tls=True``, callbacks
    that may take a TCG boot's time, *settings* on top; its log goes to
    *artefacts*/ironic.log."""
    yield from _ironic(ironic.IronicSettings(**{"require_tls": True, "callback_timeout": 600,
                                                **settings}),
                       name, factory, artefacts, log="ironic.log")


@dataclass
class Ironic:
    service: ironic.IronicService
    client: ironic.IronicClient

    @property
    def settings(self) -> ironic.IronicSettings:
        return self.service.settings


@pytest.fixture(scope="session")
def ironic_plain(tmp_path_factory: pytest.TempPathFactory,
                 e2e_artifacts: Path) -> Iterator[Ironic]:
    """Ironic with ``[agent]require_tls=False``; automated cleaning erases metadata only."""
    yield from _ironic(ironic.IronicSettings(require_tls=False), "ironic-plain",
                       tmp_path_factory, e2e_artifacts)


@pytest.fixture(scope="session")
def ironic_tls(tmp_path_factory: pytest.TempPathFactory,
               e2e_artifacts: Path) -> Iterator[Ironic]:
    """Ironic with its default ``[agent]require_tls=True``: the agent must serve HTTPS."""
    yield from _ironic(ironic.IronicSettings(require_tls=True), "ironic-tls",
                       tmp_path_factory, e2e_artifacts)


@pytest.fixture
def test_artifacts(e2e_artifacts: Path, request: pytest.FixtureRequest) -> Path:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name)
    path = e2e_artifacts / name
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def agent_link() -> Iterator[host.HostLink]:
    with host.host_link() as link:
        yield link


@pytest.fixture
def agent_disk(tmp_path: Path) -> Iterator[host.LoopDevice]:
    """The only disk the agent sees: a loop device on a sparse file.

    5 GiB because root device selection ignores disks under 4 GiB, as upstream's;
    sparse, so it costs only the blocks written.
    """
    with host.loop_device(tmp_path, 5 << 30) as loop:
        yield loop


class Flow:
    """One node and the agent runs that drive it, with failure messages that say why.

    ``agent_options`` go to the agent's config file, ``agent_cmdline`` to the
    kernel-command-line-style parameters (``LEAN_IPA_CMDLINE``).
    """

    def __init__(self, ironic_: Ironic, link: host.HostLink, disk: host.LoopDevice,
                 artifacts: Path, name: str) -> None:
        self.ironic = ironic_
        self.client = ironic_.client
        self.link = link
        self.disk = disk
        self.artifacts = artifacts
        self.runs = 0
        self.agent: host.AgentProcess | None = None
        self.node: dict[str, Any] = {}
        self.name = name

    def enroll(self, **fields: Any) -> str:
        node = self.client.create_node(f"{self.name}-{time.monotonic_ns()}", **fields)
        self.client.create_port(node["uuid"], self.link.mac)
        self.node = node
        return str(node["uuid"])

    @property
    def uuid(self) -> str:
        return str(self.node["uuid"])

    def manage(self) -> None:
        self.client.set_provision_state(self.uuid, "manage")
        self.wait({"manageable"}, timeout=60)

    def wait(self, states: set[str], timeout: float = 240) -> dict[str, Any]:
        try:
            return self.client.wait_for_state(self.uuid, states, timeout,
                                              abort=self._agent_gone)
        except (ironic.IronicError, TimeoutError) as exc:
            raise AssertionError(self.explain(str(exc))) from None

    def start_agent(self, *, auto_tls: bool, options: Mapping[str, object] | None = None,
                    cmdline: str = "", use_config_api_url: bool = True,
                    env: Mapping[str, str] | None = None) -> host.AgentProcess:
        self.runs += 1
        extra = {"block_device_allowlist": Path(self.disk.device).name, **(options or {})}
        agent = host.AgentProcess(host.our_agent_command(), self.artifacts,
                                  self.ironic.service.url, auto_tls=auto_tls, extra=extra,
                                  name=f"agent-{self.runs}", env={"LEAN_IPA_CMDLINE": cmdline, **(env or {})},
                                  api_url_in_config=use_config_api_url,
                                  path_prefix=[host.host_guards(self.artifacts / "guards")])
        self.agent = agent.start()
        return agent

    def stop_agent(self) -> int | None:
        if self.agent is None:
            return None
        code = self.agent.stop()
        return code

    def run_to(self, target: str, end_states: set[str], *, auto_tls: bool,
               wait_state: str, timeout: float = 240, **start: Any) -> dict[str, Any]:
        """Ask for *target*, start the agent once Ironic waits for it, wait for the end.

        The agent is stopped when the flow ends (Ironic wipes its token then).
        """
        self.client.set_provision_state(self.uuid, target, **start.pop("provision", {}))
        self.wait({wait_state}, timeout=60)
        self.start_agent(auto_tls=auto_tls, **start)
        try:
            return self.wait(end_states, timeout=timeout)
        finally:
            self.stop_agent()

    def _agent_gone(self) -> str | None:
        """Why waiting is pointless: the agent of the current run has exited."""
        proc = self.agent.proc if self.agent is not None else None
        if proc is not None and proc.poll() is not None:
            return f"the agent exited with code {proc.returncode}"
        return None

    def explain(self, what: str) -> str:
        """*what*, plus the agent's and Ironic's view of it."""
        parts = [what]
        if self.agent is not None:
            if self.agent.proc is not None and self.agent.proc.poll() is not None:
                parts.append(f"agent exited with {self.agent.proc.returncode}")
            parts.append(f"--- agent log ({self.agent.log}), last lines:\n"
                         + self.agent.log_tail(30))
        errors = [line for line in self.ironic.service.log_lines(self.uuid)
                  if " ERROR " in line or " WARNING " in line][-15:]
        parts.append(f"--- Ironic log ({self.ironic.service.log}), errors for the node:\n"
                     + "\n".join(line[:600] for line in errors))
        return "\n".join(parts)


@pytest.fixture
def flow_factory(agent_link: host.HostLink, agent_disk: host.LoopDevice,
                 test_artifacts: Path) -> Iterator[Callable[[Ironic], Flow]]:
    flows: list[Flow] = []

    def make(ironic_: Ironic) -> Flow:
        flow = Flow(ironic_, agent_link, agent_disk, test_artifacts,
                    test_artifacts.name[:40])
        flows.append(flow)
        return flow

    yield make
    for flow in flows:
        flow.stop_agent()
        if flow.node:
            # Leave nothing for later tests: a node keeps its port's MAC taken.
            with contextlib.suppress(Exception):
                _retire(flow)


def _retire(flow: Flow) -> None:
    # Deletion is refused in most states unless the node is in maintenance.
    if not flow.client.node(flow.uuid).get("maintenance"):
        flow.client.set_maintenance(flow.uuid, True)
    flow.client.delete_node(flow.uuid)
