# SPDX-License-Identifier: Apache-2.0
"""The tinyipa image the boot and e2e tests share: built by ``./build.sh tinyipa``
at most once per checkout state (a stamp of the inputs sits beside it)."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

TOP = Path(__file__).resolve().parents[1]


def inputs_key() -> str:
    """Hash of everything the image is built from in this checkout."""
    digest = hashlib.sha256()
    paths = [TOP / "pyproject.toml", TOP / "build.sh"]
    for top in (TOP / "tinyipa", TOP / "buildlib", TOP / "agent"):
        paths += sorted(p for p in top.rglob("*")
                        if p.is_file() and "__pycache__" not in p.parts)
    for path in paths:
        digest.update(str(path.relative_to(TOP)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def ensure_tinyipa(out: Path, name: str = "tinyipa",
                   options: tuple[str, ...] = ()) -> tuple[Path, Path]:
    """(kernel, initramfs) under *out*/tinyipa, rebuilt when the inputs changed.

    *name* and *options* (build flags such as ``--qemu-img``) make a variant beside
    the default image. Raises RuntimeError with the build's output and log tail when
    it fails.
    """
    directory = out / "tinyipa"
    kernel, initramfs = directory / f"{name}.kernel", directory / f"{name}.initramfs"
    stamp = directory / (".inputs-key" if name == "tinyipa" else f".{name}.inputs-key")
    key = inputs_key()
    if kernel.exists() and initramfs.exists() and stamp.exists() and stamp.read_text() == key:
        return kernel, initramfs
    argv = [str(TOP / "build.sh"), "tinyipa"]
    if name != "tinyipa" or options:
        argv += ["--name", name, *options]
    proc = subprocess.run(argv, cwd=TOP, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=1800,
                          check=False)
    if proc.returncode != 0:
        log = directory / "build.log"
        tail = log.read_text()[-4000:] if log.exists() else ""
        raise RuntimeError(f"./build.sh tinyipa failed:\n{proc.stdout[-3000:]}\n"
                           f"--- build.log tail ---\n{tail}")
    stamp.write_text(key)
    return kernel, initramfs
