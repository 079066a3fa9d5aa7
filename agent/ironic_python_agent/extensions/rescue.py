# SPDX-License-Identifier: Apache-2.0
"""``rescue``: hand the node over to the rescue user, then stop serving.

``finalize_rescue`` hashes the password (unless Ironic sent a hash), keeps it
in upstream's ``/etc/ipa-rescue-config/ipa-rescue-password``, sets it on the
``rescue`` account (rescue_user.py) and marks the node rescued; the image then
keeps an SSH server accepting that password running (tinyipa's /init, dib's
and coreos' ``lean-ipa-rescue`` unit).
"""

from __future__ import annotations

import os
from pathlib import Path

from ironic_python_agent import errors, rescue_user
from ironic_python_agent.extensions import base
from ironic_python_agent.run import CommandError, Secret, run

PASSWORD_FILE = "/etc/ipa-rescue-config/ipa-rescue-password"
RESCUED_MARKER = "/etc/.rescued"


def hash_password(password: str) -> str:
    """SHA-256 crypt (``$5$``), as upstream writes an unhashed password."""
    try:
        return run(["openssl", "passwd", "-5", "-stdin"], input=password,
                   log=False).stdout.strip()
    except CommandError as exc:
        raise errors.CommandExecutionError(f"cannot hash the rescue password: {exc}") from None


class RescueExtension(base.BaseAgentExtension):
    password_file = PASSWORD_FILE
    rescued_marker = RESCUED_MARKER
    root = Path("/")  # where /etc/passwd and /etc/shadow live (tests use their own)

    @base.sync_command("finalize_rescue")
    def finalize_rescue(self, rescue_password: str = "", hashed: bool = False) -> None:
        """Write the rescue password, mark the node rescued and stop the agent API."""
        if not isinstance(rescue_password, str) or not rescue_password:
            raise errors.InvalidCommandParamsError("rescue_password must be a non-empty string")
        value = rescue_password if hashed else hash_password(Secret(rescue_password))
        os.makedirs(os.path.dirname(self.password_file), exist_ok=True)
        fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(value)
        try:
            rescue_user.set_rescue_user(value, self.root)
        except (OSError, ValueError) as exc:
            raise errors.CommandExecutionError(
                f"cannot set up the rescue user: {exc}") from None
        with open(self.rescued_marker, "a", encoding="utf-8"):
            pass
        if self.agent is not None:
            self.agent.stop_serving()


EXTENSION = RescueExtension
