# SPDX-License-Identifier: Apache-2.0
"""``system``: lockdown, used when Ironic must not power the node off."""

from __future__ import annotations

from ironic_python_agent.extensions import base


class SystemExtension(base.BaseAgentExtension):
    @base.sync_command("lockdown")
    def lockdown(self) -> None:
        """Stop the API and heartbeats, take the links down, and stay up doing nothing."""
        if self.agent is not None:
            self.agent.stop_serving(lockdown=True)


EXTENSION = SystemExtension
