# SPDX-License-Identifier: Apache-2.0
"""The ``clean``, ``deploy`` and ``service`` namespaces: one definition for all three.

Each lists the steps of its kind offered by the hardware managers
(``get_<kind>_steps``) and runs one (``execute_<kind>_step``); a
``<kind>_version`` differing from the managers' versions is VersionMismatch.
"""

from __future__ import annotations

from typing import Any

from ironic_python_agent.extensions import base
from ironic_python_agent.hardware import steps

KINDS = ("clean", "deploy", "service")


def define(kind: str) -> type[base.BaseAgentExtension]:
    """The extension class of step type *kind* (one of :data:`KINDS`)."""
    if kind not in KINDS:
        raise ValueError(f"unknown step type {kind!r}; expected one of {', '.join(KINDS)}")

    def get_steps(self: base.BaseAgentExtension, node: dict[str, Any],
                  ports: list[dict[str, Any]]) -> dict[str, Any]:
        return steps.get_steps(kind, node, ports)

    def execute_step(self: base.BaseAgentExtension, step: dict[str, Any],
                     node: dict[str, Any], ports: list[dict[str, Any]],
                     **kwargs: Any) -> dict[str, Any]:
        version = kwargs.pop(f"{kind}_version", None)
        return steps.execute_step(kind, step, node, ports, version, **kwargs)

    get_steps.__doc__ = f"The {kind} steps by manager class, and the managers' versions."
    execute_step.__doc__ = (f"Run one {kind} step; a {kind}_version differing from ours "
                            "is VersionMismatch.")
    name = f"{kind.capitalize()}Extension"
    namespace = {
        "__module__": f"ironic_python_agent.extensions.{kind}",
        "__qualname__": name,
        "__doc__": f"The ``{kind}`` namespace: the hardware managers' {kind} steps.",
        f"get_{kind}_steps": base.sync_command(f"get_{kind}_steps")(get_steps),
        f"execute_{kind}_step": base.async_command(f"execute_{kind}_step")(execute_step),
    }
    return type(name, (base.BaseAgentExtension,), namespace)
