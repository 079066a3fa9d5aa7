# SPDX-License-Identifier: Apache-2.0
"""Build the agent container from coreos/Containerfile and flatten it to a squashfs.

buildah is the default (here: ``--storage-driver vfs --isolation chroot``, which
need neither a daemon nor overlay support); podman or docker work where a user
has one. The image's layers don't matter: only its flattened rootfs ships, as
upstream's ``docker export`` did, but as a squashfs the host mounts directly.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from buildlib.arch import ARCHES, DEFAULT
from buildlib.log import run
from coreos.runner import BuildError, Runner

ENGINES = ("buildah", "podman", "docker")
# The wheels must suit Debian bookworm's CPython 3.11 (glibc 2.36) on the image's
# architecture: x86_64's tags by default (buildlib/arch.py, wheel_platforms).
PLATFORMS = tuple(ARCHES[DEFAULT].wheel_platforms())
# zstd level 3: 8% bigger than level 15 and 14x faster to make (5 s vs 67 s here).
SQUASHFS_OPTIONS = ("-comp", "zstd", "-Xcompression-level", "3", "-b", "1M", "-noappend",
                    "-quiet", "-no-progress")


def pip_download(python: str, dest: Path, platforms: Sequence[str] = PLATFORMS) -> list[str]:
    """argv prefix: ``pip download`` of binary wheels for the container's Python
    (on *platforms*: pure-Python ones or those built for the image's CPU)."""
    argv = [python, "-m", "pip", "download", "-q", "--dest", os.fspath(dest),
            "--only-binary=:all:", "--python-version", "3.11",
            "--implementation", "cp", "--abi", "cp311", "--abi", "abi3", "--abi", "none"]
    for platform in platforms:
        argv += ["--platform", platform]
    return argv


def probe(engine: str, storage: Path) -> str | None:
    """Why *engine* cannot build here (None: it works): installed, and ``info`` answers.

    ``info`` needs what a build needs: docker its daemon, buildah/podman their
    (private, vfs) storage.
    """
    if shutil.which(engine) is None:
        return "not installed"
    try:
        run([engine, *storage_options(engine, storage), "info"], timeout=60)
    except BuildError as exc:
        return f"`{engine} info` failed: {str(exc).rsplit(' | ', 1)[-1].split(': ', 1)[-1][:200]}"
    return None


def pick_engine(wanted: str, storage: Path, install: Callable[[str], None] | None = None,
                log: Callable[[str], None] = lambda _line: None) -> str:
    """The container engine to use: the one asked for, or the first that works.

    With ``auto``, each of buildah, podman, docker is probed (a docker CLI without a
    reachable daemon is refused); when none works, *install* is called for buildah
    and it is probed again. The error (and the log) name every engine tried and why
    it was refused.
    """
    candidates = ENGINES if wanted == "auto" else (wanted,)
    refused: dict[str, str] = {}
    for engine in candidates:
        reason = probe(engine, storage)
        if reason is None:
            log(f"container engine: {engine}" + (f" (refused: {_said(refused)})"
                                                   if refused else ""))
            return engine
        refused[engine] = reason
    if install is not None and "buildah" in candidates and shutil.which("buildah") is None:
        log(f"no container engine works ({_said(refused)}); installing buildah")
        install("buildah")
        reason = probe("buildah", storage)
        if reason is None:
            log("container engine: buildah (installed)")
            return "buildah"
        refused["buildah (installed)"] = reason
    raise BuildError(f"no container engine works: {_said(refused)}; "
                     + ("install buildah (apt-get install buildah) or pass --engine"
                        if wanted == "auto" else "try --engine auto"))


def _said(refused: dict[str, str]) -> str:
    return "; ".join(f"{engine}: {why}" for engine, why in refused.items())


def storage_options(engine: str, storage: Path) -> list[str]:
    """Private vfs storage under the cache: no daemon, no overlay, no shared state."""
    if engine == "docker":
        return []
    return ["--root", os.fspath(storage / "root"), "--runroot", os.fspath(storage / "run"),
            "--storage-driver", "vfs"]


def build_and_export(runner: Runner, engine: str, storage: Path, context: Path, tag: str,
                     squashfs: Path, platform: str | None = None) -> None:
    """Build the image from ``context`` and write its flattened rootfs as ``squashfs``.

    *platform* (``linux/arm64``) builds for another architecture: its RUN steps
    run through qemu-user (buildlib/emulation.py), and the image says so.
    """
    opts = storage_options(engine, storage)
    build = [engine, *opts, "build", "--file", os.fspath(context / "Containerfile"),
             "--tag", tag, *(["--platform", platform] if platform else [])]
    if engine != "docker":
        build += ["--isolation", "chroot", "--layers=false"]
    runner.run([*build, context])
    try:
        if engine == "buildah":
            export_with_buildah(runner, opts, tag, squashfs)
        else:
            export_with_engine(runner, engine, opts, tag, squashfs)
    finally:
        # The squashfs is the cache; the (vfs: full copy per layer) image is not kept.
        runner.run([engine, *opts, "rmi", "--force", tag])


def export_with_buildah(runner: Runner, opts: list[str], tag: str, squashfs: Path) -> None:
    """buildah mounts the image's rootfs; mksquashfs reads it in place."""
    ctr = runner.run(["buildah", *opts, "from", "--pull-never", tag], capture=True).strip()
    try:
        mnt = runner.run(["buildah", *opts, "mount", ctr], capture=True).strip()
        runner.run(["mksquashfs", mnt, squashfs, *SQUASHFS_OPTIONS])
    finally:
        runner.run(["buildah", *opts, "rm", ctr])


def export_with_engine(runner: Runner, engine: str, opts: list[str], tag: str,
                       squashfs: Path) -> None:
    """podman/docker: create a container, export its filesystem, squash that."""
    ctr = runner.run([engine, *opts, "create", tag, "/bin/true"], capture=True).strip()
    try:
        with tempfile.TemporaryDirectory(prefix="export.", dir=squashfs.parent) as tmp:
            tarball = Path(tmp) / "rootfs.tar"
            runner.run([engine, *opts, "export", "--output", os.fspath(tarball), ctr])
            tree = Path(tmp) / "rootfs"
            tree.mkdir()
            runner.run(["tar", "-x", "-p", "--numeric-owner", "-f", tarball, "-C", tree])
            runner.run(["mksquashfs", tree, squashfs, *SQUASHFS_OPTIONS])
    finally:
        runner.run([engine, *opts, "rm", ctr])
