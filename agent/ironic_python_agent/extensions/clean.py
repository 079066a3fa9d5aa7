# SPDX-License-Identifier: Apache-2.0
"""The ``clean`` namespace: list the clean steps of the hardware managers and run one."""

from __future__ import annotations

from typing import Any

from ironic_python_agent.extensions import base
from ironic_python_agent.hardware import options, steps


class CleanExtension(base.BaseAgentExtension):
    def __init__(self, agent: Any = None) -> None:
        super().__init__(agent=agent)
        conf = getattr(agent, "conf", None)
        if conf is not None:
            options.configure(conf=conf, params=getattr(agent, "params", None))

    @base.sync_command("get_clean_steps")
    def get_clean_steps(self, node: dict[str, Any],
                        ports: list[dict[str, Any]]) -> dict[str, Any]:
        """The clean steps by manager class, and the managers' versions."""
        return steps.get_steps("clean", node, ports)

    @base.async_command("execute_clean_step")
    def execute_clean_step(
            self, step: dict[str, Any], node: dict[str, Any],
            ports: list[dict[str, Any]], clean_version: Any = None,
            **kwargs: Any) -> dict[str, Any]:
        """Run one clean step; a version map differing from ours is VersionMismatch."""
        return steps.execute_step("clean", step, node, ports, clean_version, **kwargs)


EXTENSION = CleanExtension
