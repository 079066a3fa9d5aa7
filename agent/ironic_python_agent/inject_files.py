# SPDX-License-Identifier: Apache-2.0
"""The ``inject_files`` deploy and service step: files written into the deployed disk.

Files come from ``node.properties.inject_files`` followed by the step's
``files`` argument (upstream's names and fields). Each file names where it goes:

- ``partition`` a number: that partition of the install disk;
- ``partition`` any other string: the mount source as given (``/dev/sdb2``,
  ``LABEL=config-2``, ``UUID=…``, ``PARTUUID=…``, ``PARTLABEL=…``; the tags
  are resolved through ``blkid``);
- no ``partition``: the first partition of the install disk on which the
  path's first directory exists (``etc`` for ``/etc/sysctl.d/x.conf``), which
  finds the root file system.

``content`` is base64, or a URL (containing ``://``) that is formatted with
``{node}`` / ``{ports}`` and downloaded. ``mode`` and ``dirmode`` (for the leaf
directory when it is created), numeric ``owner`` / ``group`` and ``deleted``
behave as upstream. Content is written to a temporary file in the target
directory and renamed over the old one, so a failed download leaves the old
file (and its mode and owner, which the new one inherits) in place.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ironic_python_agent import download, errors
from ironic_python_agent.run import CommandError, run

LOG = logging.getLogger(__name__)

ARGSINFO = {
    "files": {
        "description": (
            "Files to inject, a list of file structures with keys: 'path' "
            "(path to the file), 'partition' (partition specifier), "
            "'content' (base64 encoded string), 'mode' (new file mode) and "
            "'dirmode' (mode for the leaf directory, if created). "
            "Merged with the values from node.properties[inject_files]."
        ),
        "required": False,
    },
    "verify_ca": {
        "description": (
            "Whether to verify TLS certificates. Global agent options "
            "are used by default."
        ),
        "required": False,
    },
}

FIELDS = frozenset({"path", "partition", "content", "deleted", "mode", "dirmode", "owner",
                    "group"})
MOUNT_TAGS = ("LABEL=", "UUID=", "PARTUUID=", "PARTLABEL=")
SKIP_FS_TYPES = frozenset({"LVM2_member", "linux_raid_member", "crypto_LUKS", "swap"})
CHUNK = 1 << 20


def validate(from_properties: Any, from_args: Any) -> list[dict[str, Any]]:
    """The files to inject, or InvalidCommandParamsError naming every problem."""
    if not isinstance(from_properties, list):
        raise errors.InvalidCommandParamsError(
            "The `inject_files` node property must be a list, got "
            f"{type(from_properties).__name__}")
    if not isinstance(from_args, list):
        raise errors.InvalidCommandParamsError(
            f"The `files` argument must be a list, got {type(from_args).__name__}")
    files = from_properties + from_args
    failures = []
    for fl in files:
        if not isinstance(fl, dict):
            failures.append(f"expected an object, got {fl!r}")
            continue
        unknown = set(fl) - FIELDS
        if unknown:
            failures.append(f"unexpected fields in {fl}: {', '.join(sorted(unknown))}")
        path = fl.get("path")
        if not path or not isinstance(path, str):
            failures.append(f"expected a path in {fl}")
        elif os.path.dirname(path) == "/" and not fl.get("partition"):
            failures.append(f'{fl} in root directory requires "partition"')
        elif path.endswith("/"):
            failures.append(f"directories not supported for {fl}")
        elif ".." in path.split("/"):
            failures.append(f"'..' is not allowed in the path of {fl}")
        if fl.get("content") and fl.get("deleted"):
            failures.append(f"content cannot be used with deleted in {fl}")
        if fl.get("content") is not None and not isinstance(fl.get("content"), str):
            failures.append(f"content must be a string in {fl}")
        partition = fl.get("partition")
        if partition is not None and not isinstance(partition, (str, int)):
            failures.append(f"partition must be a number or a string in {fl}")
        for name in ("owner", "group", "mode", "dirmode"):
            if name in fl and type(fl[name]) is not int:
                failures.append(f"{name} must be a number in {fl}")
    if failures:
        raise errors.InvalidCommandParamsError(
            "Validation of files failed: " + "; ".join(failures))
    return files


# --- devices and mounts ----------------------------------------------------------------

def partitions(device: str, sys_class_block: Path = Path("/sys/class/block")
               ) -> list[tuple[int, str]]:
    """``(number, /dev/name)`` of *device*'s partitions in number order (from sysfs)."""
    disk = sys_class_block / os.path.basename(os.path.realpath(device))
    found = []
    try:
        entries = list(disk.iterdir())
    except OSError:
        return []
    for entry in entries:
        try:
            number = int((entry / "partition").read_text().strip())
        except (OSError, ValueError):
            continue
        found.append((number, f"/dev/{entry.name}"))
    return sorted(found)


def disk_partitions(device: str) -> list[tuple[int, str]]:
    """Partitions of *device*, asking the kernel to re-read its table when it shows none."""
    found = partitions(device)
    if not found:
        run(["partprobe", device], check=False, timeout=60)
        run(["udevadm", "settle", "--timeout=30"], check=False, timeout=60)
        found = partitions(device)
    return found


def partition_device(device: str, number: int) -> str:
    for num, path in disk_partitions(device):
        if num == number:
            return path
    raise errors.DeviceNotFound(f"Partition {number} not found on {device}")


def resolve_source(spec: str) -> str:
    """A mount source: ``LABEL=``/``UUID=``/... tags become the device ``blkid`` finds."""
    if not spec.upper().startswith(MOUNT_TAGS):
        return spec
    key, _, value = spec.partition("=")
    out = run(["blkid", "-o", "device", "-t", f"{key.upper()}={value}"], check=False,
              timeout=60).stdout.split()
    if not out:
        raise errors.DeviceNotFound(f"No partition found with {spec}")
    if len(out) > 1:
        LOG.warning("Several devices match %s (%s); using %s", spec, ", ".join(out), out[0])
    return out[0]


def fs_type(device: str) -> str:
    try:
        return run(["blkid", "-o", "value", "-s", "TYPE", device], check=False,
                   timeout=60).stdout.strip()
    except CommandError:
        return ""


@contextlib.contextmanager
def mounted(source: str) -> Iterator[str]:
    """Mount *source* read-write on a temporary directory, unmount and remove it after."""
    where = tempfile.mkdtemp(prefix="inject-")
    try:
        try:
            run(["mount", source, where], timeout=120)
        except CommandError as exc:
            raise errors.CommandExecutionError(f"Cannot mount {source}: {exc}") from None
        try:
            yield where
        finally:
            _unmount(where)
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(where)


def _unmount(where: str, attempts: int = 5) -> None:
    for attempt in range(attempts):
        try:
            run(["umount", where], timeout=120)
            return
        except CommandError as exc:
            if attempt == attempts - 1:
                raise errors.CommandExecutionError(
                    f"Cannot unmount {where}: {exc}") from None
            time.sleep(1)


@contextlib.contextmanager
def find_partition_with_path(path: str, device: str) -> Iterator[str]:
    """Mount the first partition of *device* holding directory *path*; yield that directory."""
    lookup = path.lstrip("/")
    scanned = disk_partitions(device)
    for _number, part in scanned:
        kind = fs_type(part)
        if kind in SKIP_FS_TYPES:
            LOG.debug("Skipping %s partition %s", kind, part)
            continue
        LOG.debug("Inspecting partition %s for path %s", part, path)
        with contextlib.ExitStack() as stack:
            try:
                where = stack.enter_context(mounted(part))
            except errors.CommandExecutionError as exc:
                LOG.warning("Failure when inspecting partition %s: %s", part, exc)
                continue
            found = os.path.join(where, lookup)
            if not os.path.isdir(found):
                continue
            LOG.info("Path %s has been found on partition %s", path, part)
            yield found
            return
    raise errors.DeviceNotFound(
        f"No partition found with path {path}, scanned: {[p for _, p in scanned]}")


@contextlib.contextmanager
def target_path(path: str, partition: str | int | None, root_dev: str) -> Iterator[str]:
    """The full path of *path* on its mounted partition."""
    rel = os.path.normpath(path.strip("/"))
    if partition is not None and partition != "":
        try:
            number = int(partition)
        except ValueError:
            source = resolve_source(str(partition))
        else:
            source = partition_device(root_dev, number)
        with mounted(source) as where:
            yield os.path.join(where, rel)
        return
    if "/" not in rel:
        raise errors.InvalidCommandParamsError(
            f"Invalid path {path}, must be an absolute path to a file")
    first, rest = rel.split("/", 1)
    with find_partition_with_path(first, root_dev) as where:
        yield os.path.join(where, rest)


# --- writing ---------------------------------------------------------------------------

def _write_content(fp: Any, content: str, node: Mapping[str, Any],
                   ports: Sequence[Any], opts: download.DownloadOptions) -> None:
    if "://" in content:
        url = content.format(node=node, ports=ports)
        try:
            resp = download.open_url(url, opts)
        except (download.HTTPStatusError, OSError) as exc:
            raise errors.CommandExecutionError(
                f"Cannot download {download.redact_url(url)}: {exc}") from None
        try:
            while chunk := resp.read(CHUNK):
                fp.write(chunk)
        finally:
            resp.close()
        return
    try:
        fp.write(base64.b64decode(content, validate=True))
    except (binascii.Error, ValueError) as exc:
        raise errors.InvalidCommandParamsError(
            f"content is not valid base64: {exc}") from None


def write_file(path: str, fl: Mapping[str, Any], node: Mapping[str, Any],
               ports: Sequence[Any], opts: download.DownloadOptions) -> None:
    """Write one file (already mounted at *path*) as *fl* describes."""
    if fl.get("deleted"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        LOG.info("Removed %s", fl["path"])
        return
    dirpath = os.path.dirname(path)
    try:
        os.makedirs(dirpath)
    except FileExistsError:
        pass
    else:
        # chmod, not makedirs(mode=): the umask must not apply (as upstream).
        if fl.get("dirmode"):
            os.chmod(dirpath, fl["dirmode"])
    old = None
    with contextlib.suppress(FileNotFoundError):
        old = os.stat(path)
    fd, tmp = tempfile.mkstemp(dir=dirpath, prefix=".inject-")
    try:
        with os.fdopen(fd, "wb") as fp:
            _write_content(fp, fl.get("content") or "", node, ports, opts)
            fp.flush()
            os.fsync(fp.fileno())
        if old is not None:
            os.chmod(tmp, old.st_mode & 0o7777)
            with contextlib.suppress(OSError):
                os.chown(tmp, old.st_uid, old.st_gid)
        else:
            os.chmod(tmp, 0o666 & ~_umask())
        if fl.get("mode"):
            os.chmod(tmp, fl["mode"])
        if fl.get("owner") is not None or fl.get("group") is not None:
            # -1 leaves that id alone
            os.chown(tmp, fl.get("owner", -1), fl.get("group", -1))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    LOG.info("Injected %s", fl["path"])


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def inject_files(node: Mapping[str, Any], ports: Sequence[Any], files: Any,
                 root_dev: Any, opts: download.DownloadOptions) -> None:
    """The step. *root_dev* is a callable giving the install disk (asked only when needed)."""
    properties = (node or {}).get("properties") or {}
    todo = validate(properties.get("inject_files") or [], files or [])
    if not todo:
        LOG.info("No files to inject")
        return
    device = root_dev()
    for fl in todo:
        try:
            with target_path(fl["path"], fl.get("partition"), device) as path:
                write_file(path, fl, node, ports, opts)
        except errors.RESTError:
            LOG.exception("Failed to process file %s", fl["path"])
            raise
        except Exception as exc:  # noqa: BLE001 - named with the file, as upstream
            LOG.exception("Failed to process file %s", fl["path"])
            raise errors.CommandExecutionError(
                f"Failed to process file {fl['path']}. {type(exc).__name__}: {exc}") from exc
