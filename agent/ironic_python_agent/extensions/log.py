# SPDX-License-Identifier: Apache-2.0
"""``log``: a tarball of what an operator needs to debug a failed deploy."""

from __future__ import annotations

import base64
import io
import logging
import os
import tarfile
import time
from typing import Any

from ironic_python_agent.extensions import base
from ironic_python_agent.run import CommandError, run

LOG = logging.getLogger(__name__)

# member name -> command; a command that is missing or fails is left out.
COMMANDS: dict[str, list[str]] = {
    "df": ["df", "-a"],
    "dmesg": ["dmesg"],
    "efibootmgr": ["efibootmgr", "-v"],
    "ip_addr": ["ip", "addr"],
    "ip_route": ["ip", "route"],
    "lsblk": ["lsblk"],
    "lsblk-full": ["lsblk", "--all", "--bytes", "--output-all", "--pairs"],
    "mount": ["mount"],
    "parted": ["parted", "-s", "-l"],
    "ps": ["ps", "au"],
    "iptables": ["iptables", "-L"],
    "multipath": ["multipath", "-ll"],
}
FILES = {"mdstat": "/proc/mdstat", "cmdline": "/proc/cmdline", "meminfo": "/proc/meminfo"}
MAX_FILE = 16 * 1024 * 1024  # a runaway log must not fill the conductor's database


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(time.time())
    tar.addfile(info, io.BytesIO(data))


def _read_tail(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - MAX_FILE))
            return f.read()
    except OSError:
        return None


def gather(log_file: str | None = None) -> dict[str, bytes]:
    """Name → content of every log member that could be collected."""
    out: dict[str, bytes] = {}
    try:
        out["journal"] = run(["journalctl", "--full", "--no-pager", "-b"], binary=True,
                             log=False).stdout[-MAX_FILE:]
    except CommandError:
        for name in ("syslog", "messages", "ironic-python-agent.log"):
            data = _read_tail(os.path.join("/var/log", name))
            if data is not None:
                out[f"var-log/{name}"] = data
    for name, argv in COMMANDS.items():
        try:
            out[name] = run(argv, binary=True, log=False, timeout=60).stdout[-MAX_FILE:]
        except CommandError:
            continue
    for name, path in FILES.items():
        data = _read_tail(path)
        if data is not None:
            out[name] = data
    if log_file:
        data = _read_tail(log_file)
        if data is not None:
            out["agent.log"] = data
    return out


def make_tarball(members: dict[str, bytes]) -> str:
    """A base64 gzip tarball of *members*, as Ironic stores it."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in sorted(members.items()):
            _add(tar, name, data)
    return base64.b64encode(buf.getvalue()).decode("ascii")


class LogExtension(base.BaseAgentExtension):
    @base.sync_command("collect_system_logs")
    def collect_system_logs(self, **kwargs: Any) -> dict[str, str]:
        """``{"system_logs": <base64 gzip tarball>}``."""
        conf = getattr(self.agent, "conf", None)
        members = gather(getattr(conf, "log_file", None))
        try:
            from ironic_python_agent import hardware

            io_dict: dict[str, Any] = {}
            file_list: list[str] = []
            hardware.dispatch_to_all_managers("collect_system_logs", io_dict, file_list)
            for name, value in io_dict.items():
                data = value.getvalue() if hasattr(value, "getvalue") else value
                members[name] = data.encode() if isinstance(data, str) else bytes(data)
            for path in file_list:
                data = _read_tail(path)
                if data is not None:
                    members[path.lstrip("/")] = data
        except Exception as exc:  # noqa: BLE001 - logs are best effort
            LOG.debug("Hardware managers added no logs: %s", exc)
        return {"system_logs": make_tarball(members)}


EXTENSION = LogExtension
