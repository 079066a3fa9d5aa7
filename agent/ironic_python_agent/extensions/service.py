# SPDX-License-Identifier: Apache-2.0
"""The ``service`` namespace: list the service steps of the hardware managers and run one."""

from __future__ import annotations

from typing import Any

from ironic_python_agent.extensions import base
from ironic_python_agent.hardware import options, steps


class ServiceExtension(base.BaseAgentExtension):
    def __init__(self, agent: Any = None) -> None:
        super().__init__(agent=agent)
        conf = getattr(agent, "conf", None)
        if conf is not None:
            options.configure(conf=conf, params=getattr(agent, "params", None))

    @base.sync_command("get_service_steps")
    def get_service_steps(self, node: dict[str, Any],
                          ports: list[dict[str, Any]]) -> dict[str, Any]:
        """The service steps by manager class, and the managers' versions."""
        return steps.get_steps("service", node, ports)

    @base.async_command("execute_service_step")
    def execute_service_step(
            self, step: dict[str, Any], node: dict[str, Any],
            ports: list[dict[str, Any]], service_version: Any = None,
            **kwargs: Any) -> dict[str, Any]:
        """Run one service step; a version map differing from ours is VersionMismatch."""
        return steps.execute_step("service", step, node, ports, service_version, **kwargs)


EXTENSION = ServiceExtension
