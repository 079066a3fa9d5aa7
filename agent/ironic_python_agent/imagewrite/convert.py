# SPDX-License-Identifier: Apache-2.0
"""``qemu-img convert`` of a verified cache file (formats without a streaming reader)."""

from __future__ import annotations

import json

from ironic_python_agent import errors, image_format, run
from ironic_python_agent.image_format import ImageFormat


def convert_image(path: str, device: str, fmt: ImageFormat) -> int:
    """``qemu-img convert`` a verified cache file onto *device*; bytes written.

    ``qemu-img info`` looks at the file first: a backing or data file found
    there is refused even when the header check was switched off.
    """
    driver = image_format.QEMU_DRIVER.get(fmt, fmt.value)
    env = {"MALLOC_ARENA_MAX": "3"}
    try:
        info = json.loads(run.run(["qemu-img", "info", "--output=json", "-f", driver, path],
                                  env=env).stdout)
    except (run.CommandError, ValueError) as exc:
        raise errors.InvalidImage(f"qemu-img cannot read the image as {driver}: {exc}") from None
    if info.get("backing-filename") or info.get("full-backing-filename"):
        raise errors.InvalidImage("the image has a backing file; refusing to use it")
    if (info.get("format-specific") or {}).get("data", {}).get("data-file"):
        raise errors.InvalidImage("the image uses an external data file; refusing to use it")
    argv = ["qemu-img", "convert", "-f", driver, "-O", "host_device",
            "-t", "none", "-S", "0", "-W", path, device]  # fmt: skip
    try:
        run.run(argv, env=env)
    except run.CommandError as exc:
        raise errors.ImageWriteError(device, exc.returncode if exc.returncode is not None
                                     else "", exc.stdout, exc.stderr) from None
    return int(info.get("virtual-size", 0))
