# SPDX-License-Identifier: Apache-2.0
"""A real Squid (Debian's ``squid``) on loopback, as an image cache in front of an origin.

Started in the foreground (``squid -N``) with its own configuration, cache
directory, logs and PID file in a fresh directory under the system's temporary
directory (Squid runs as the ``proxy`` user, which cannot enter pytest's private
temporary directories), listening on 127.0.0.1 on a free port; nothing of the
host's ``/etc/squid`` is read. On exit the directory is removed, its logs copied
to *keep* first when given. The configuration is
the one ``doc/image-deployment.rst`` recommends to operators of a deploy
image cache (:func:`render_config`).

    with Squid(keep=tmp_path) as proxy:
        image_info["proxies"] = {"http": proxy.url}
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from tests.e2e.ironic import free_port, wait_for_port
from tests.processes import stop_process

# Squid drops root for this user (Debian's package creates it).
SQUID_USER = "proxy"


def render_config(port: int, workdir: Path, cache_mib: int = 4096,
                  read_ahead_mib: int = 64) -> str:
    """squid.conf for a deploy-image cache on 127.0.0.1:*port*, state under *workdir*.

    *read_ahead_mib* is how far Squid's fetch from the origin may run ahead of
    the slowest node reading the same object (memory Squid holds per image in
    flight): below the image size, every node waits for the slowest one.
    """
    return "\n".join([
        f"http_port 127.0.0.1:{port}",
        "http_access allow localhost",
        "http_access deny all",
        f"pid_filename {workdir / 'squid.pid'}",
        f"cache_log {workdir / 'cache.log'}",
        # status, bytes to the client, method, URL, cache result, client, how the
        # origin was reached (HIER_NONE: it was not, for this request)
        "logformat lean %>Hs %<st %rm %ru %Ss %>a %Sh",
        f"access_log stdio:{workdir / 'access.log'} lean",
        "cache_store_log none",
        f"coredump_dir {workdir}",
        # Images are large: the default 4 MB limit caches none of them. It must come
        # before cache_dir, which takes its default max-size from it.
        "maximum_object_size 64 GB",
        # 4 x 16 directories, not the usual 16 x 256: a few large objects, and
        # making and removing 4096 directories costs a test seconds.
        f"cache_dir aufs {workdir / 'cache'} {cache_mib} 4 16",
        "cache_mem 64 MB",
        "maximum_object_size_in_memory 1 MB",
        # N nodes asking at once for an image not cached yet: one fetch from the origin.
        "collapsed_forwarding on",
        # A Range request (a resume, a qcow2 table read) for an object not cached yet
        # fetches the whole object, so the next node's request is a hit; and a node
        # that goes away does not abort the fetch the others are waiting for.
        "range_offset_limit -1",
        "quick_abort_min -1 KB",
        # Image files do not change under their name: keep them a week without
        # asking the origin again, even one uploaded a minute ago (without
        # override-lastmod an object's freshness is the age it had when fetched).
        "refresh_pattern . 10080 100% 10080 override-lastmod",
        f"read_ahead_gap {read_ahead_mib} MB",
        "shutdown_lifetime 0 seconds",
        "visible_hostname lean-ipa-cache",
        # Nothing outside the work directory: no pinger helper, no netdb file.
        "pinger_enable off",
        "netdb_filename none",
        "",
    ])


@dataclass(frozen=True)
class AccessEntry:
    """One line of the access log."""

    status: int
    bytes: int
    method: str
    url: str
    result: str  # TCP_MISS, TCP_HIT, TCP_MEM_HIT, ...
    client: str
    hierarchy: str  # HIER_DIRECT: fetched from the origin; HIER_NONE: not


def parse_access_log(text: str) -> list[AccessEntry]:
    """The entries of an access log written with the ``lean`` logformat."""
    entries = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) != 7 or not fields[0].isdigit() or not fields[1].isdigit():
            continue
        if fields[2] == "-":  # a connection without a request (a port probe)
            continue
        entries.append(AccessEntry(int(fields[0]), int(fields[1]), *fields[2:]))
    return entries


class Squid:
    """``squid -N`` with the configuration above; stopped (and its state kept) on exit."""

    def __init__(self, keep: Path | None = None, cache_mib: int = 4096,
                 read_ahead_mib: int = 64) -> None:
        self.keep = keep
        self.cache_mib = cache_mib
        self.read_ahead_mib = read_ahead_mib
        self.port = 0
        self.workdir = Path(tempfile.mkdtemp(prefix="lean-ipa-squid-"))
        self.conf = self.workdir / "squid.conf"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> Self:
        binary = shutil.which("squid") or "/usr/sbin/squid"
        self.workdir.chmod(0o755)
        (self.workdir / "cache").mkdir(exist_ok=True)
        user = pwd.getpwnam(SQUID_USER)
        for path in (self.workdir, self.workdir / "cache"):
            os.chown(path, user.pw_uid, user.pw_gid)
        self.port = free_port()
        self.conf.write_text(render_config(self.port, self.workdir, self.cache_mib,
                                           self.read_ahead_mib))
        log = self.workdir / "squid.out"
        with open(log, "ab") as out:
            # -z makes the cache's directory tree and exits.
            subprocess.run([binary, "-N", "-z", "-f", str(self.conf)], check=True,
                           stdout=out, stderr=subprocess.STDOUT, timeout=timeout)
            self.proc = subprocess.Popen([binary, "-N", "-d", "1", "-f", str(self.conf)],
                                         stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            wait_for_port(self.port, timeout, self.proc)
        except (RuntimeError, TimeoutError) as exc:
            self.stop()
            raise RuntimeError(f"squid did not start: {exc}\n{self.log_tail()}") from None
        return self

    def access_log(self) -> list[AccessEntry]:
        """What Squid answered so far (it writes a line when a transaction ends)."""
        try:
            return parse_access_log((self.workdir / "access.log").read_text(errors="replace"))
        except OSError:
            return []

    def wait_for_log(self, count: int, timeout: float = 10) -> list[AccessEntry]:
        """The access log once it has *count* entries (or what it has after *timeout*)."""
        deadline = time.monotonic() + timeout
        entries = self.access_log()
        while len(entries) < count and time.monotonic() < deadline:
            time.sleep(0.1)
            entries = self.access_log()
        return entries

    def log_tail(self, lines: int = 30) -> str:
        text = []
        for name in ("squid.out", "cache.log"):
            try:
                text += (self.workdir / name).read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                pass
        return "\n".join(text)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout=15, kill_timeout=5)
            self.proc = None
        if self.keep is not None:
            self.keep.mkdir(parents=True, exist_ok=True)
            for name in ("squid.conf", "squid.out", "cache.log", "access.log"):
                if (self.workdir / name).exists():
                    shutil.copyfile(self.workdir / name, self.keep / f"squid-{name}")
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
