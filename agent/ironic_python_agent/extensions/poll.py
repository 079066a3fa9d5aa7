# SPDX-License-Identifier: Apache-2.0
"""``poll``: the inventory and the node as the agent knows it."""

from __future__ import annotations

from typing import Any

from ironic_python_agent.extensions import base


class PollExtension(base.BaseAgentExtension):
    @base.sync_command("get_hardware_info")
    def get_hardware_info(self) -> Any:
        """The hardware inventory (the same document inspection sends)."""
        from ironic_python_agent import hardware

        return hardware.dispatch_to_managers("list_hardware_info")

    @base.sync_command("get_node_info")
    def get_node_info(self) -> Any:
        """The node Ironic returned at lookup (None before lookup)."""
        return getattr(self.agent, "node", None)


EXTENSION = PollExtension
