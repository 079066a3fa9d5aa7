# SPDX-License-Identifier: Apache-2.0
"""Upstream-compatible helpers for third-party hardware managers (only those).

Managers written for the upstream agent call ``utils.execute(*cmd)``, unpack
``(stdout, stderr)`` and catch oslo.concurrency's
``processutils.ProcessExecutionError`` (with ``exit_code``, ``stdout``,
``stderr``, ``cmd``) or ``OSError`` when the program is missing; this
delegates to :func:`ironic_python_agent.run.run` and raises those. Our own
code calls ``run.run`` directly.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from ironic_python_agent import run

LOG = logging.getLogger(__name__)

try:
    from oslo_concurrency.processutils import ProcessExecutionError as _Base
except ImportError:  # an image built without oslo.concurrency: same attributes
    class _Base(Exception):  # type: ignore[no-redef]
        def __init__(self, stdout: Any = None, stderr: Any = None, exit_code: Any = None,
                     cmd: Any = None, description: Any = None) -> None:
            super().__init__(description or f"Unexpected error while running command.\n"
                             f"Command: {cmd}\nExit code: {exit_code}\n"
                             f"Stdout: {stdout!r}\nStderr: {stderr!r}")
            self.stdout, self.stderr, self.exit_code = stdout, stderr, exit_code
            self.cmd, self.description = cmd, description


class ProcessExecutionError(_Base):  # type: ignore[misc,valid-type]
    """A failed command: an instance of oslo.concurrency's ProcessExecutionError."""

    def __init__(self, argv: list[str], exit_code: int | None, stdout: Any, stderr: Any
                 ) -> None:
        super().__init__(stdout=stdout, stderr=stderr, exit_code=exit_code,
                         cmd=" ".join(argv))
        self.argv = tuple(argv)


def execute(*cmd: Any, check_exit_code: Any = True, process_input: Any = None,
            timeout: float | None = None, env_variables: dict[str, str] | None = None,
            binary: bool = False, use_standard_locale: bool = False,
            log_stdout: bool = True, **_ignored: Any) -> tuple[Any, Any]:
    """Run *cmd* and return ``(stdout, stderr)``, as upstream's ``utils.execute``.

    Raises :class:`ProcessExecutionError` on an exit code not allowed by
    *check_exit_code* (True: 0 only; False: any; a list: those) and
    ``FileNotFoundError`` when the program does not exist.
    """
    argv = [str(c) for c in (cmd[0] if len(cmd) == 1 and isinstance(cmd[0], (list, tuple))
                             else cmd)]
    env = dict(env_variables or {})
    if use_standard_locale:
        env["LC_ALL"] = "C"
    allowed: list[int] | None
    if isinstance(check_exit_code, (list, tuple)):
        allowed = [int(c) for c in check_exit_code]
    elif isinstance(check_exit_code, bool):
        allowed = [0] if check_exit_code else None
    else:
        allowed = [int(check_exit_code)]
    try:
        done = run.run(argv, check=False, input=process_input, timeout=timeout,
                       env=env or None, binary=binary)
    except run.CommandError as exc:
        if exc.returncode is None:
            raise FileNotFoundError(2, f"{argv[0]}: command not found", argv[0]) from None
        raise ProcessExecutionError(argv, exc.returncode, exc.stdout, exc.stderr) from None
    if log_stdout:
        LOG.debug("%s: stdout %r, stderr %r", argv[0], done.stdout, done.stderr)
    if allowed is not None and done.returncode not in allowed:
        raise ProcessExecutionError(argv, done.returncode, done.stdout, done.stderr)
    return done.stdout, done.stderr


def try_execute(*cmd: Any, **kwargs: Any) -> tuple[Any, Any] | None:
    """:func:`execute`, but a failure (or a missing program) is logged and gives None."""
    try:
        return execute(*cmd, **kwargs)
    except (ProcessExecutionError, OSError) as exc:
        LOG.debug("Command failed: %s", exc)
        return None


def get_agent_params() -> dict[str, str]:
    """The kernel parameters the agent was started with (a copy)."""
    from ironic_python_agent import config

    return dict(config.params())


def is_char_device(path: str) -> bool:
    """Whether *path* is a character device (upstream's helper)."""
    import stat

    try:
        return stat.S_ISCHR(os.stat(path).st_mode)
    except OSError:
        return False
