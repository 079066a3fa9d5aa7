# SPDX-License-Identifier: Apache-2.0
"""The ``deploy`` namespace: list the deploy steps of the hardware managers and run one."""

from __future__ import annotations

from typing import Any

from ironic_python_agent.extensions import base
from ironic_python_agent.hardware import options, steps


class DeployExtension(base.BaseAgentExtension):
    def __init__(self, agent: Any = None) -> None:
        super().__init__(agent=agent)
        conf = getattr(agent, "conf", None)
        if conf is not None:
            options.configure(conf=conf, params=getattr(agent, "params", None))

    @base.sync_command("get_deploy_steps")
    def get_deploy_steps(self, node: dict[str, Any],
                         ports: list[dict[str, Any]]) -> dict[str, Any]:
        """The deploy steps by manager class, and the managers' versions."""
        return steps.get_steps("deploy", node, ports)

    @base.async_command("execute_deploy_step")
    def execute_deploy_step(
            self, step: dict[str, Any], node: dict[str, Any],
            ports: list[dict[str, Any]], deploy_version: Any = None,
            **kwargs: Any) -> dict[str, Any]:
        """Run one deploy step; a version map differing from ours is VersionMismatch."""
        return steps.execute_step("deploy", step, node, ports, deploy_version, **kwargs)


EXTENSION = DeployExtension
