# SPDX-License-Identifier: Apache-2.0
"""``iso-image-create``: check the inputs, then build the ESP and the ISO."""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from buildlib import outputs, signature
from isoimage import arm64
from isoimage import bootconfig
from isoimage import esp
from isoimage import hosttools
from isoimage import image
from isoimage import magic
from isoimage import signed
from isoimage.errors import IsoError

PROG = "iso-image-create"
_LABEL = re.compile(r"[A-Za-z0-9_-]{1,32}")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Pack a kernel + initramfs into an ISO that boots with BIOS (isolinux) "
                    "and UEFI (GRUB), for Ironic virtual media.",
        epilog=f"The UEFI GRUB reads {bootconfig.GRUB_CONFIG_PATH} from the ISO: set Ironic's "
               f"[DEFAULT]grub_config_path to {bootconfig.GRUB_CONFIG_PATH.lstrip('/')} "
               "(its default) when you use the --esp image as [conductor]bootloader.")
    parser.add_argument("-o", "--output", type=Path, metavar="OUT.iso", help="the ISO to write")
    parser.add_argument("-i", "--initrd", type=Path, metavar="INITRD",
                        help="the initramfs (cpio, or cpio compressed with gzip/xz/zstd/...)")
    parser.add_argument("-k", "--kernel", type=Path, metavar="KERNEL",
                        help="the kernel (x86 bzImage)")
    parser.add_argument("--append", default="", metavar="ARGS",
                        help="kernel parameters baked into the ISO after boot_method=vmedia, "
                             "e.g. 'ipa-api-url=http://ironic:6385 ipa-insecure=1'")
    parser.add_argument("--esp", type=Path, metavar="OUT.img",
                        help="also (or, without -o, only) write the FAT EFI system partition "
                             "image, for Ironic's [conductor]bootloader")
    parser.add_argument("--label", default=image.DEFAULT_LABEL,
                        help=f"ISO volume label (default {image.DEFAULT_LABEL})")
    parser.add_argument("--arch", default="x86_64", choices=["x86_64", "amd64", "arm64", "aarch64"],
                        help="the kernel's architecture (default x86_64); arm64: a UEFI-only "
                             "ISO with GRUB arm64-efi")
    parser.add_argument("--grub-efi-dir", type=Path, metavar="DIR",
                        help="arm64: GRUB's arm64-efi modules (default: /usr/lib/grub/arm64-efi, "
                             "else grub-efi-arm64-bin fetched from the Debian mirror)")
    parser.add_argument("--release", default="bookworm",
                        help="arm64: the Debian release grub-efi-arm64-bin is fetched from")
    parser.add_argument("--secure-boot", action="store_true",
                        help="UEFI through Debian's signed chain (shim-signed, "
                             "grub-efi-amd64-signed) instead of a GRUB image built here; the "
                             "kernel's signature is checked against Debian's CA")
    parser.add_argument("--efi-root", type=Path, default=Path("/"), metavar="DIR",
                        help="with --secure-boot: where those packages are installed or "
                             "unpacked (default /)")
    parser.add_argument("--manifest", type=Path, metavar="OUT.manifest",
                        help="write what went in, and whether the ISO can boot with Secure "
                             "Boot (a 'secure_boot true|false' line)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every command run")
    args = parser.parse_args(argv)
    if args.output is None and args.esp is None:
        parser.error("-o OUT.iso is required (or --esp OUT.img to write only the ESP)")
    if args.output is not None:
        missing = [flag for flag, value in (("-i INITRD", args.initrd), ("-k KERNEL", args.kernel))
                   if value is None]
        if missing:
            parser.error(f"-o needs {' and '.join(missing)}")
    args.arch = {"amd64": "x86_64", "aarch64": "arm64"}.get(args.arch, args.arch)
    if not _LABEL.fullmatch(args.label):
        parser.error(f"--label {args.label!r}: use 1-32 letters, digits, '_' or '-'")
    return args


def check_input(path: Path, what: str,
                describe: Callable[[bytes], str | None] | None = None) -> None:
    """Raise :class:`IsoError` unless *path* is a readable file that looks like *what*
    (a kernel as *describe* checks it: an x86 bzImage by default)."""
    flag = {"kernel": "-k", "initrd": "-i"}[what]
    if not path.exists():
        raise IsoError(f"{what} {path} ({flag}): no such file")
    if not path.is_file():
        raise IsoError(f"{what} {path} ({flag}): not a regular file")
    try:
        with path.open("rb") as stream:
            head = stream.read(magic.HEAD_SIZE)
    except OSError as exc:
        raise IsoError(f"{what} {path} ({flag}): cannot read: {exc.strerror}") from None
    if what == "kernel":
        problem = (describe or magic.describe_kernel)(head)
    else:
        problem = magic.describe_initrd(head)
    if problem is not None:
        raise IsoError(f"{what} {path} ({flag}) does not look like a {what}: {problem}")


def check_output(path: Path, flag: str) -> None:
    """Raise :class:`IsoError` unless a file can be written at *path*."""
    if path.is_dir():
        raise IsoError(f"output {path} ({flag}) is a directory; give a file name")
    parent = path.parent
    if not parent.exists():
        raise IsoError(f"output directory {parent} ({flag}) does not exist")
    if not parent.is_dir():
        raise IsoError(f"output directory {parent} ({flag}) is not a directory")
    try:
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as exc:
        raise IsoError(f"output directory {parent} ({flag}) is not writable: "
                       f"{exc.strerror}") from None


def _replace_from(tmp: Path, final: Path) -> None:
    os.chmod(tmp, 0o644)
    os.replace(tmp, final)


def create(args: argparse.Namespace) -> None:
    """Check everything first, then write the ESP and/or the ISO."""
    if args.arch == "arm64":
        return create_arm64(args)
    if args.output is not None:
        check_input(args.kernel, "kernel")
        check_input(args.initrd, "initrd")
        check_output(args.output, "-o")
    if args.esp is not None:
        check_output(args.esp, "--esp")
    kernel_args = tuple(bootconfig.kernel_args(args.append))
    bootconfig.grub_early_cfg()  # a missing jinja2 shows here, before any work
    if args.manifest is not None:
        check_output(args.manifest, "--manifest")
    needs = hosttools.ISO_NEEDS if args.output is not None else hosttools.ESP_NEEDS
    tools = hosttools.find_host_tools(needs + (("sbverify",) if args.secure_boot else ()))
    chain = signed.find(args.efi_root) if args.secure_boot else None
    with tempfile.TemporaryDirectory(prefix="iso-image-create.") as tmp:
        work = Path(tmp)
        verdict = None
        if chain is not None and args.output is not None:
            verdict = signature.verify_kernel(args.kernel, chain["debian-ca"],
                                              tools["sbverify"], work)
            if not verdict.verified:
                logging.warning("the kernel %s is not signed by Debian's CA (%s): this ISO "
                                "will not boot with Secure Boot enforced", args.kernel,
                                verdict.detail)
        esp_image = esp.make_esp(work / "efiboot.img", work, tools, chain)
        if args.esp is not None:
            write_esp(esp_image, args.esp, "")
        if args.output is None:
            if args.manifest is not None:
                write_manifest(args, chain, verdict)
            return
        spec = image.IsoSpec(kernel=args.kernel, initrd=args.initrd, kernel_args=kernel_args,
                             label=args.label)
        tree = work / "tree"
        image.stage_tree(spec, tree, esp_image, tools)
        partial = args.output.with_name(f".{args.output.name}.partial")
        try:
            image.make_iso(spec, partial, tree, tools)
            _replace_from(partial, args.output)
        finally:
            partial.unlink(missing_ok=True)
        if args.manifest is not None:
            write_manifest(args, chain, verdict)
        logging.info("wrote %s (%d MiB, label %s): %s", args.output,
                     args.output.stat().st_size // 2**20, args.label,
                     " ".join(bootconfig.quote_for_kernel(a) for a in kernel_args))


def create_arm64(args: argparse.Namespace) -> None:
    """The UEFI-only arm64 ISO and ESP (isoimage/arm64.py)."""
    if args.output is not None:
        check_input(args.kernel, "kernel", arm64.describe_kernel)
        check_input(args.initrd, "initrd")
        check_output(args.output, "-o")
    if args.esp is not None:
        check_output(args.esp, "--esp")
    kernel_args = tuple(bootconfig.kernel_args(args.append))
    bootconfig.grub_early_cfg()
    if args.manifest is not None:
        check_output(args.manifest, "--manifest")
    if args.secure_boot:
        logging.warning("arm64: no signed shim/GRUB chain is used yet; this ISO cannot boot "
                        "with Secure Boot enforced (manifest: secure_boot false)")
    tools = hosttools.find_host_tools(("grub-mkimage", "mkfs.fat", "mmd", "mcopy")
                                      + (("xorriso",) if args.output is not None else ()))
    cache = Path(os.environ.get("CACHE") or Path(__file__).resolve().parents[2] / ".cache")
    grub_dir = arm64.grub_modules_dir(args.grub_efi_dir, cache / "tinyipa", args.release)
    with tempfile.TemporaryDirectory(prefix="iso-image-create.") as tmp:
        work = Path(tmp)
        esp_image = arm64.make_esp(work / "efiboot.img", work, tools, grub_dir)
        if args.esp is not None:
            write_esp(esp_image, args.esp, "arm64; ")
        if args.manifest is not None:
            write_manifest(args, None, None)
        if args.output is None:
            return
        spec = image.IsoSpec(kernel=args.kernel, initrd=args.initrd, kernel_args=kernel_args,
                             label=args.label)
        tree = work / "tree"
        arm64.stage_tree(spec, tree, esp_image)
        partial = args.output.with_name(f".{args.output.name}.partial")
        try:
            arm64.make_iso(spec, partial, tree, esp_image, tools)
            _replace_from(partial, args.output)
        finally:
            partial.unlink(missing_ok=True)
        logging.info("wrote %s (arm64, UEFI only, %d MiB, label %s): %s", args.output,
                     args.output.stat().st_size // 2**20, args.label,
                     " ".join(bootconfig.quote_for_kernel(a) for a in kernel_args))


def write_esp(esp_image: Path, dest: Path, note: str) -> None:
    """The ESP image alone at *dest* (for Ironic's ``[conductor]bootloader``)."""
    partial = dest.with_name(f".{dest.name}.partial")
    partial.write_bytes(esp_image.read_bytes())
    _replace_from(partial, dest)
    logging.info("wrote %s (%sGRUB reads %s from the boot ISO)", dest, note,
                 bootconfig.GRUB_CONFIG_PATH)


def manifest_lines(args: argparse.Namespace, chain: dict[str, Path] | None,
                   verdict: signature.KernelSignature | None) -> list[str]:
    """Sorted ``<kind> <what> <details>`` lines, as the image builders write them."""
    lines = ["input builder iso", f"input secure-boot {str(args.secure_boot).lower()}"]
    for flag, path in (("kernel", args.kernel), ("initrd", args.initrd)):
        if path is not None and args.output is not None:
            lines.append(f"input {flag} sha256:{outputs.sha256(path)}")
    if chain is None:
        lines.append("uefi-loader grub-mkimage unsigned")
        lines.append("secure_boot false unsigned GRUB built here ("
                     + ("arm64: no signed chain yet)" if args.arch == "arm64"
                        else "no --secure-boot)"))
    else:
        lines += [f"uefi-loader {name} sha256:{outputs.sha256(path)}"
                  for name, path in sorted(chain.items())]
        lines += (verdict.manifest_lines() if verdict is not None
                  else ["secure_boot true signed shim and GRUB (no kernel in this build)"])
    return sorted(lines)


def write_manifest(args: argparse.Namespace, chain: dict[str, Path] | None,
                   verdict: signature.KernelSignature | None) -> None:
    partial = args.manifest.with_name(f".{args.manifest.name}.partial")
    partial.write_text("\n".join(manifest_lines(args, chain, verdict)) + "\n")
    _replace_from(partial, args.manifest)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format=f"{PROG}: %(message)s", stream=sys.stderr)
    try:
        create(args)
    except IsoError as exc:
        print(f"{PROG}: error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"{PROG}: hint: {exc.hint}", file=sys.stderr)
        return 1
    return 0
