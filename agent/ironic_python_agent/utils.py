# SPDX-License-Identifier: Apache-2.0
"""Upstream-compatible helpers for third-party hardware managers (only those).

Managers written for the upstream agent call ``utils.execute(*cmd)`` and unpack
``(stdout, stderr)``; this delegates to :func:`ironic_python_agent.run.run`.
Our own code calls ``run.run`` directly.
"""

from __future__ import annotations

from typing import Any

from ironic_python_agent import run


def execute(*cmd: Any, check_exit_code: Any = True, process_input: Any = None,
            timeout: float | None = None, env_variables: dict[str, str] | None = None,
            binary: bool = False, **_ignored: Any) -> tuple[Any, Any]:
    """Run *cmd* and return ``(stdout, stderr)``; raises ``run.CommandError``."""
    argv = [str(c) for c in (cmd[0] if len(cmd) == 1 and isinstance(cmd[0], (list, tuple))
                             else cmd)]
    if isinstance(check_exit_code, (list, tuple)):
        done = run.run(argv, check=False, input=process_input, timeout=timeout,
                       env=env_variables, binary=binary)
        if done.returncode not in check_exit_code:
            raise run.CommandError(argv, done.returncode, str(done.stdout), str(done.stderr))
    else:
        done = run.run(argv, check=bool(check_exit_code), input=process_input,
                       timeout=timeout, env=env_variables, binary=binary)
    return done.stdout, done.stderr


def try_execute(*cmd: Any, **kwargs: Any) -> tuple[Any, Any] | None:
    """:func:`execute`, but a failure is logged and gives None."""
    try:
        return execute(*cmd, **kwargs)
    except run.CommandError as exc:
        import logging

        logging.getLogger(__name__).warning("Command failed: %s", exc)
        return None


def get_agent_params() -> dict[str, str]:
    """The kernel parameters the agent was started with (a copy)."""
    from ironic_python_agent import config

    return dict(config.params())
