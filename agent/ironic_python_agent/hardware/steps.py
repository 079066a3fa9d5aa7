# SPDX-License-Identifier: Apache-2.0
"""Clean, deploy and service steps: listing with de-duplication, and execution.

The three step types share one shape; *kind* is ``"clean"``, ``"deploy"`` or
``"service"``.
"""

from __future__ import annotations

import logging
from typing import Any

from ironic_python_agent import errors
from ironic_python_agent.hardware import managers
from ironic_python_agent.hardware.devices import to_json

LOG = logging.getLogger(__name__)

STEP_ERRORS: dict[str, type[errors.RESTError]] = {
    "clean": errors.CleaningError,
    "deploy": errors.DeploymentError,
    "service": errors.ServicingError,
}


def deduplicate(candidates: dict[str, list[dict[str, Any]]],
                support: dict[str, int]) -> dict[str, list[dict[str, Any]]]:
    """Keep one step per name across managers.

    The winner has the highest manager support, then the highest priority, then
    the manager class name that sorts first; it stays under its manager's key.
    """
    best: dict[str, tuple[tuple[int, int, str], str, dict[str, Any]]] = {}
    for manager_name, steps in candidates.items():
        for step in steps or []:
            name = str(step.get("step"))
            # Sort key: larger is better for support and priority, smaller name wins.
            key = (support.get(manager_name, 0), int(step.get("priority") or 0),
                   manager_name)
            current = best.get(name)
            if current is None:
                best[name] = (key, manager_name, step)
                continue
            (c_support, c_prio, c_name), _, _ = current
            if (key[0], key[1]) > (c_support, c_prio) or (
                    (key[0], key[1]) == (c_support, c_prio) and manager_name < c_name):
                best[name] = (key, manager_name, step)
    result: dict[str, list[dict[str, Any]]] = {name: [] for name in candidates}
    for _, manager_name, step in best.values():
        result[manager_name].append(step)
    return result


def get_steps(kind: str, node: dict[str, Any] | None,
              ports: list[dict[str, Any]] | None) -> dict[str, Any]:
    """``{"<kind>_steps": {ManagerClass: [steps]}, "hardware_manager_version": {...}}``."""
    managers.cache_node(node)
    candidates = managers.dispatch_to_all_managers(f"get_{kind}_steps", node, ports)
    support = {d["name"]: d["support"] for d in managers.get_managers_detail()}
    return {f"{kind}_steps": deduplicate(candidates, support),
            "hardware_manager_version": managers.get_current_versions()}


def execute_step(kind: str, step: dict[str, Any], node: dict[str, Any] | None,
                 ports: list[dict[str, Any]] | None, version: Any = None,
                 **kwargs: Any) -> dict[str, Any]:
    """Run *step* on the managers; ``{"<kind>_result": ..., "<kind>_step": step}``."""
    managers.cache_node(node)
    managers.check_versions(version)
    if not isinstance(step, dict) or "step" not in step:
        # Upstream answers this with a plain ValueError (CommandExecutionError on the wire).
        raise ValueError(f"Malformed {kind}_step, no 'step' key: {step!r}")
    kwargs.update(step.get("args") or {})
    name = step["step"]
    LOG.info("Executing %s step %s", kind, name)
    try:
        result = managers.dispatch_to_managers(name, node, ports, **kwargs)
    except errors.RESTError:
        raise
    except Exception as exc:  # noqa: BLE001 - wrapped with the step's name
        LOG.exception("Error performing %s step %s", kind, name)
        raise STEP_ERRORS[kind](f"Unexpected exception performing {kind} step {name}. "
                                f"{type(exc).__name__}: {exc}") from exc
    if isinstance(result, tuple):
        result = list(result)
    LOG.info("%s step %s done", kind.capitalize(), name)
    return {f"{kind}_result": to_json(result), f"{kind}_step": step}
