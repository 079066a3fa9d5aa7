# SPDX-License-Identifier: Apache-2.0
"""The outputs every builder writes to out/<target>/, the same way.

  <name>.kernel, <name>.initramfs   the image
  <name>.manifest                   sorted lines "<kind> <what> <details>": "input ..."
                                    for what went in (builder, release, arch, name,
                                    wheel, options), then what is inside (deb, python,
                                    kernel, ...); two builds diff cleanly
  sha256sums                        sha256sum -c format, one line per file, for every
                                    --name built into this directory
  build.log                         every command and its output
  ironic/                           with --ironic-layout: what Ironic tooling downloads
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tarfile
from collections.abc import Sequence
from pathlib import Path

IPA_NAME = "ironic-python-agent"
ARM64_IMAGE_MAGIC = b"ARM\x64"   # at offset 56 of an arm64 kernel Image


def sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def common_inputs(target: str, name: str, release: str, arch: str) -> list[str]:
    """The manifest lines every builder starts with."""
    return [f"input builder {target}", f"input name {name}", f"input release {release}",
            f"input arch {arch}"]


def update_sums(out: Path, files: Sequence[str]) -> None:
    """Put *files* (names in *out*) into out/sha256sums, keeping other builds' lines
    (and dropping lines of files no longer there)."""
    sumfile = out / "sha256sums"
    old = sumfile.read_text().splitlines() if sumfile.exists() else []
    kept = [line for line in old if "  " in line
            and line.split("  ", 1)[1] not in files
            and (out / line.split("  ", 1)[1]).exists()]
    sums = sorted(kept + [f"{sha256(out / f)}  {f}" for f in files],
                  key=lambda line: line.split("  ", 1)[1])
    tmp = sumfile.with_suffix(".tmp")
    tmp.write_text("\n".join(sums) + "\n")
    tmp.replace(sumfile)


def write_manifest(out: Path, name: str, lines: Sequence[str]) -> Path:
    path = out / f"{name}.manifest"
    path.write_text("\n".join(lines) + "\n")
    return path


def publish(out: Path, name: str, manifest: Sequence[str]) -> None:
    """<name>.manifest and sha256sums for <name>.kernel and <name>.initramfs."""
    write_manifest(out, name, manifest)
    update_sums(out, [f"{name}.kernel", f"{name}.initramfs"])


def write_kernel(vmlinuz: Path, dest: Path) -> None:
    """<name>.kernel as shipped: an x86_64 bzImage as it is; Debian's arm64 vmlinuz
    is the plain Image (~33 MB), gzip'd (~11 MB), as other distributions ship
    theirs: GRUB, iPXE and QEMU's -kernel unpack it. (tinyipa's kernel_file does
    the same.)"""
    data = vmlinuz.read_bytes()
    if data[56:60] == ARM64_IMAGE_MAGIC:
        data = gzip.compress(data, compresslevel=9, mtime=0)
    tmp = dest.with_name(dest.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(dest)


def _place(src: Path, dest: Path) -> None:
    """dest as a hard link to src (a copy across file systems)."""
    tmp = dest.with_name(dest.name + ".tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    tmp.replace(dest)


def _sumfile(path: Path) -> None:
    path.with_name(path.name + ".sha256").write_text(f"{sha256(path)}  {path.name}\n")


def ironic_layout(out: Path, name: str, flavor: str, branch: str) -> list[Path]:
    """The files Ironic tooling downloads, under out/ironic/:

    * ironic-python-agent.kernel / .initramfs (+ .sha256): what Metal3's
      ironic-ipa-downloader leaves in its images directory and what Ironic's
      [deploy] / bifrost settings name;
    * ipa-<flavor>-<branch>.tar.gz holding ipa-<flavor>-<branch>.kernel and
      .initramfs, and ipa-<flavor>-<branch>.tar.gz.sha256: what
      ironic-ipa-downloader fetches from IPA_BASEURI;
    * files/ipa-<flavor>-<branch>.kernel / .initramfs (+ .sha256): what devstack
      and bifrost fetch (IRONIC_AGENT_KERNEL_URL, ipa_kernel_upstream_url).
    """
    base = f"ipa-{flavor}-{branch.replace('/', '-')}"
    dest = out / "ironic"
    (dest / "files").mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for suffix in ("kernel", "initramfs"):
        src = out / f"{name}.{suffix}"
        for target in (dest / f"{IPA_NAME}.{suffix}", dest / "files" / f"{base}.{suffix}"):
            _place(src, target)
            _sumfile(target)
            written.append(target)
    tarball = dest / f"{base}.tar.gz"
    tmp = tarball.with_name(tarball.name + ".tmp")
    with tarfile.open(tmp, "w:gz", compresslevel=1) as tar:
        for suffix in ("kernel", "initramfs"):
            info = tar.gettarinfo(str(out / f"{name}.{suffix}"), arcname=f"{base}.{suffix}")
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = int(os.environ.get("SOURCE_DATE_EPOCH", info.mtime))
            with open(out / f"{name}.{suffix}", "rb") as f:
                tar.addfile(info, f)
    tmp.replace(tarball)
    _sumfile(tarball)
    written.append(tarball)
    return written
