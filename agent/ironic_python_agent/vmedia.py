# SPDX-License-Identifier: Apache-2.0
"""Configuration carried on virtual media (boot_method=vmedia).

Two sources, as Ironic writes them:

* ``parameters.txt`` on a small device labelled ``ir-vfd-dev`` (a virtual
  floppy or USB stick): kernel-style ``key=value`` pairs.
* ``etc/ironic-python-agent/`` and ``etc/ironic-python-agent.d/`` on a device
  labelled ``config-2`` or ``vmedia_boot_iso``: config files and the CA
  Ironic wants the agent to trust, copied into ``/etc``.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator

from ironic_python_agent import errors
from ironic_python_agent.run import CommandError, run

LOG = logging.getLogger(__name__)

PARAMS_LABEL = "ir-vfd-dev"
CONFIG_LABELS = ("config-2", "vmedia_boot_iso")
MAX_USB_SIZE = 4 * 1024**3


def is_vmedia_device(dev: dict[str, str]) -> bool:
    """True for a whole device that is a CD-ROM, or a USB disk under 4 GiB.

    *dev* holds ``lsblk -b`` columns: KNAME, TRAN, TYPE, SIZE.
    """
    kind = dev.get("TYPE", "")
    if kind == "part":
        return False
    if kind == "rom":
        return True
    try:
        size = int(dev.get("SIZE") or 0)
    except ValueError:
        return False
    return kind == "disk" and dev.get("TRAN") == "usb" and 0 < size < MAX_USB_SIZE


def find_labelled_device(labels: tuple[str, ...]) -> str | None:
    """The vmedia device (``/dev/<kname>``) whose filesystem label is one of *labels*."""
    try:
        out = run(["lsblk", "-J", "-b", "-o", "KNAME,TRAN,TYPE,SIZE,LABEL"], log=False).stdout
    except CommandError:
        out = ""
    rows: list[dict[str, str]] = []
    if out.strip().startswith("{"):
        # Partitions inherit the transport of their disk.
        def walk(devs: list[dict[str, object]], parent_tran: str | None) -> None:
            for d in devs:
                tran = d.get("tran") or parent_tran
                rows.append({"KNAME": str(d.get("kname") or ""), "TRAN": str(tran or ""),
                             "TYPE": str(d.get("type") or ""), "SIZE": str(d.get("size") or 0),
                             "LABEL": str(d.get("label") or "")})
                walk(d.get("children") or [], tran)  # type: ignore[arg-type]

        walk(json.loads(out).get("blockdevices", []), None)
    wanted = {label.lower() for label in labels}
    for row in rows:
        if row.get("LABEL", "").lower() in wanted and is_vmedia_device(row):
            return "/dev/" + row["KNAME"]
    # Upstream's fallback: a device whose model says it is virtual media.
    for model_file in glob.glob("/sys/class/block/*/device/model"):
        try:
            with open(model_file, encoding="utf-8") as f:
                if "virtual media" in f.read().lower():
                    return "/dev/" + model_file.split("/")[4]
        except OSError:
            continue
    return None


@contextlib.contextmanager
def mounted(device: str) -> Iterator[str]:
    """Mount *device* read-only on a temporary directory (or reuse an existing mount)."""
    try:
        existing = run(["findmnt", "-n", "-o", "TARGET", "--source", device], check=False,
                       log=False).stdout.split()
    except CommandError:
        existing = []
    if existing:
        yield existing[0]
        return
    where = tempfile.mkdtemp(prefix="vmedia-")
    try:
        run(["mount", "-o", "ro", device, where])
        try:
            yield where
        finally:
            run(["umount", where], check=False)
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(where)


def read_parameters_txt() -> str | None:
    """The text of ``parameters.txt`` on the ``ir-vfd-dev`` device, or None."""
    device = find_labelled_device((PARAMS_LABEL,))
    if device is None:
        LOG.info("boot_method=vmedia but no %s device was found", PARAMS_LABEL)
        return None
    with mounted(device) as where:
        path = os.path.join(where, "parameters.txt")
        try:
            with open(path, encoding="utf-8") as f:
                LOG.info("Reading parameters from %s on %s", path, device)
                return f.read()
        except OSError as exc:
            LOG.warning("No parameters.txt on %s: %s", device, exc)
            return None


def copy_config(root: str = "/") -> bool:
    """Copy agent config files from a config drive or vmedia ISO into ``/etc``.

    Returns True when a device was found and copied.
    """
    device = find_labelled_device(CONFIG_LABELS)
    if device is None:
        return False
    with mounted(device) as where:
        for sub in ("etc/ironic-python-agent", "etc/ironic-python-agent.d"):
            src = os.path.join(where, sub)
            if not os.path.isdir(src):
                continue
            dest = os.path.join(root, sub)
            try:
                os.makedirs(dest, exist_ok=True)
                for name in os.listdir(src):
                    shutil.copy2(os.path.join(src, name), os.path.join(dest, name))
            except OSError as exc:
                raise errors.VirtualMediaBootError(
                    f"copying {src} to {dest} failed: {exc}") from exc
            LOG.info("Copied configuration from %s:%s to %s", device, sub, dest)
    return True
