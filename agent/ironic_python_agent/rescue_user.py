# SPDX-License-Identifier: Apache-2.0
"""The ``rescue`` login that ``rescue.finalize_rescue`` sets up, in any image.

The agent writes the account itself (``/etc/passwd``, ``/etc/shadow`` and,
with sudo present, ``/etc/sudoers.d/rescue``) instead of relying on an image
hook, so tinyipa, dib and coreos behave alike:

- with sudo (dib, coreos): an ordinary user ``rescue`` (home ``/home/rescue``)
  allowed every command through sudo without a password, as upstream's
  ramdisk sets it up; OpenSSH refuses password logins of uid 0, so the user
  must not be root;
- without sudo (tinyipa): ``rescue`` is a second name for uid 0, since there
  is nothing to raise privileges with.

Existing ``rescue`` lines are replaced, other lines are kept byte for byte,
and each file is replaced atomically.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

USER = "rescue"
UID = 1999


def _replace_line(path: Path, name: str, line: str | None, mode: int) -> None:
    try:
        old = path.read_text().splitlines()
    except FileNotFoundError:
        old = []
    kept = [entry for entry in old if entry.split(":", 1)[0] != name]
    if line is not None:
        kept.append(line)
    _write(path, "".join(f"{entry}\n" for entry in kept), mode)


def _write(path: Path, text: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def has_sudo(root: Path) -> bool:
    return any((root / d / "sudo").exists() for d in ("usr/bin", "bin", "usr/sbin"))


def set_rescue_user(password_hash: str, root: Path = Path("/")) -> str:
    """Create or update the ``rescue`` account with *password_hash* (crypt(3)); its kind."""
    if ":" in password_hash or "\n" in password_hash:
        raise ValueError("a crypt(3) hash holds no ':' or newline")
    etc = root / "etc"
    shell = "/bin/bash" if (root / "bin/bash").exists() else "/bin/sh"
    if has_sudo(root):
        home = root / "home" / USER
        home.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            os.chown(home, UID, UID)
        _replace_line(etc / "group", USER, f"{USER}:x:{UID}:", 0o644)
        _replace_line(etc / "passwd", USER, f"{USER}:x:{UID}:{UID}:rescue:/home/{USER}:{shell}",
                      0o644)
        _write(etc / "sudoers.d" / USER, f"{USER} ALL=(ALL) NOPASSWD: ALL\n", 0o440)
        kind = "sudo"
    else:
        _replace_line(etc / "passwd", USER, f"{USER}:x:0:0:rescue:/root:{shell}", 0o644)
        kind = "uid0"
    _replace_line(etc / "shadow", USER, f"{USER}:{password_hash}:19000:0:99999:7:::", 0o600)
    return kind
