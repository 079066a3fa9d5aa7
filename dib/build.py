# SPDX-License-Identifier: Apache-2.0
"""Build the dib ramdisk: stock ``disk-image-create`` with the elements in elements/.

Everything the image needs lives in the elements; this gathers the inputs (the
agent wheel, the Debian mirror, the kernel-module selection, login keys), runs
diskimage-builder with one progress line per DIB phase, and writes the outputs
like every builder (buildlib.outputs). Unchanged inputs and present outputs mean
there is nothing to do (--rebuild builds anyway).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from buildlib import arch as arches
from buildlib import emulation, host, modules, options, outputs, signature
from buildlib.log import BuildError, Log

TOP = Path(__file__).resolve().parents[1]
ELEMENTS = TOP / "elements"
DIB_VERSION = "3.43.0"
PHASE = re.compile(r"(Running hooks from \S*/|/tmp/in_target\.d/)([a-z-]+)\.d")
SECRET = re.compile(r"^(DIB_[A-Z0-9_]*(PASSWORD|SECRET|TOKEN)[A-Z0-9_]*=).+")


@dataclass
class Context:
    common: options.Common
    cache: Path
    packages: list[str] = field(default_factory=list)
    elements: list[str] = field(default_factory=list)
    ca_bundle: Path | None = None
    extra_hardware: bool = False
    log: Log = field(init=False)
    wheel: Path = field(init=False)
    venv: Path = field(init=False)

    @property
    def out(self) -> Path:
        return self.common.output

    @property
    def name(self) -> str:
        return self.common.name

    @property
    def arch(self) -> arches.Arch:
        return arches.get(self.common.arch)


def build(ctx: Context) -> None:
    ctx.out.mkdir(parents=True, exist_ok=True)
    ctx.log = Log(ctx.out / "build.log", prefix="dib")
    ctx.log.say(f"building {ctx.name} ({ctx.common.release}) into {ctx.out}; "
                f"log {ctx.log.path}")
    with ctx.log.step("diskimage-builder venv") as notes:
        ctx.venv = make_venv(ctx)
        notes.append(f"diskimage-builder {DIB_VERSION}")
    with ctx.log.step("agent wheel") as notes:
        found = ctx.log.run([TOP / "build.sh", "wheel"], capture=True).split()
        wheels = [Path(w) for w in found if w.endswith(".whl")]
        if len(wheels) != 1:
            raise BuildError(f"./build.sh wheel gave {found}, expected one wheel")
        # Copied aside at once: another build may be rebuilding out/dist meanwhile.
        ctx.wheel = ctx.cache / "dib-wheel" / wheels[0].name
        shutil.rmtree(ctx.wheel.parent, ignore_errors=True)
        ctx.wheel.parent.mkdir(parents=True)
        shutil.copyfile(wheels[0], ctx.wheel)
        notes.append(ctx.wheel.name)
    if not ctx.arch.native:
        with ctx.log.step("emulation") as notes:
            try:
                host.ensure(["emulation"])
            except host.HostError as exc:
                raise BuildError(str(exc)) from None
            emulation.ensure(ctx.arch, ctx.log.info)
            notes.append(f"{ctx.arch.machine} programs run through {ctx.arch.emulator}")
    inputs = input_lines(ctx)
    stamp = ctx.out / ".inputs"
    if (not ctx.common.rebuild and stamp.exists() and stamp.read_text() == inputs
            and all((ctx.out / f"{ctx.name}.{s}").exists() for s in ("kernel", "initramfs"))):
        ctx.log.say(f"up to date ({ctx.out / ctx.name}.initramfs); --rebuild rebuilds")
        ironic_layout(ctx)
        return
    for old in [*ctx.out.glob(f"{ctx.name}.*"), stamp]:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
        else:
            old.unlink(missing_ok=True)
    with ctx.log.step(f"disk-image-create ({ctx.common.release})", announce=True):
        disk_image_create(ctx)
    # an arm64 Image (33 MB) shipped gzip'd, as tinyipa's and coreos' (GRUB, iPXE unpack it)
    outputs.write_kernel(ctx.out / f"{ctx.name}.kernel", ctx.out / f"{ctx.name}.kernel")
    with ctx.log.step("kernel signature") as notes:
        verdict = signature.check_kernel(ctx.out / f"{ctx.name}.kernel", ctx.cache, ctx.log)
        notes.append(verdict.manifest_line().removeprefix("secure_boot "))
    with ctx.log.step("checksums and manifest") as notes:
        dib_manifest = ctx.out / f"{ctx.name}.manifest"
        inside = dib_manifest.read_text().splitlines() if dib_manifest.exists() else []
        outputs.publish(ctx.out, ctx.name, ["input " + line for line in inputs.splitlines()]
                        + inside + [verdict.manifest_line()])
        stamp.write_text(inputs)
        sizes = {s: (ctx.out / f"{ctx.name}.{s}").stat().st_size for s in ("kernel", "initramfs")}
        notes.append(", ".join(f"{ctx.name}.{s} {size / 1e6:.1f} MB" for s, size in sizes.items()))
    ironic_layout(ctx)


def ironic_layout(ctx: Context) -> None:
    c = ctx.common
    if c.ironic_layout:
        with ctx.log.step("ironic layout") as notes:
            notes.append(str(outputs.ironic_layout(ctx.out, ctx.name, c.ironic_flavor,
                                                   c.ironic_branch)[-1]))


def make_venv(ctx: Context) -> Path:
    """.cache/venv-dib with diskimage-builder, made once per version."""
    venv = ctx.cache / "venv-dib"
    stamp = venv / ".lean-ipa-stamp"
    want = f"diskimage-builder=={DIB_VERSION}"
    if stamp.exists() and stamp.read_text().strip() == want:
        return venv
    if not (venv / "bin/python").exists():
        ctx.log.run([sys.executable, "-m", "venv", venv])
    ctx.log.run([venv / "bin/python", "-m", "pip", "install", "-q", "--upgrade", "pip"])
    ctx.log.run([venv / "bin/python", "-m", "pip", "install", "-q", want])
    stamp.write_text(want + "\n")
    return venv


def mirror() -> str:
    """The Debian mirror the host's apt uses (deb.debian.org if none)."""
    texts = []
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        if path.suffix in (".list", ".sources") or path.name == "sources.list":
            try:
                texts.append(path.read_text())
            except OSError:
                pass
    for line in "\n".join(texts).splitlines():
        if line.lstrip().startswith("#"):
            continue
        m = re.search(r"(https?://\S+/debian)/?(\s|$)", line)
        if m:
            return m.group(1)
    return "http://deb.debian.org/debian"


def short(data: str | bytes) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()[:16]


def element_list(ctx: Context) -> list[str]:
    elements = ["debian-minimal", "lean-ipa", *ctx.elements]
    if (ctx.common.ssh_keys or ctx.common.password_hash) and "lean-ipa-login" not in elements:
        elements.append("lean-ipa-login")
    return elements


def input_lines(ctx: Context) -> str:
    """Everything that decides the image's content (values of secrets hashed)."""
    c = ctx.common
    with zipfile.ZipFile(ctx.wheel) as whl:
        # RECORD hashes every file in the wheel (the zip itself has timestamps).
        record = whl.read(next(n for n in whl.namelist() if n.endswith(".dist-info/RECORD")))
    tree = hashlib.sha256()
    for path in sorted(p for p in ELEMENTS.rglob("*") if p.is_file()):
        tree.update(str(path.relative_to(TOP)).encode() + b"\0" + path.read_bytes())
    lines = ["builder dib", f"name {c.name}", f"release {c.release}", f"arch {c.arch}",
             f"diskimage-builder {DIB_VERSION}", f"mirror {mirror()}",
             f"elements {' '.join(element_list(ctx))}", f"packages {' '.join(ctx.packages)}",
             f"modules {' '.join(c.extra_modules)}", f"extra-hardware {int(ctx.extra_hardware)}",
             f"kernel-modules.toml {short(modules.LIST.read_bytes())}",
             f"ssh-keys {short(chr(10).join(c.ssh_keys))}",
             f"password-hash {short(c.password_hash or '')}",
             f"ca-bundle {short(ctx.ca_bundle.read_bytes()) if ctx.ca_bundle else ''}",
             f"wheel {ctx.wheel.name} {short(record)}", f"elements-tree {tree.hexdigest()[:16]}"]
    lines += sorted("env " + SECRET.sub(r"\1***", f"{k}={v}")
                    for k, v in os.environ.items() if k.startswith("DIB_"))
    return "\n".join(lines) + "\n"


def disk_image_create(ctx: Context) -> None:
    """Stock disk-image-create, its output in the log, one line per DIB phase."""
    c = ctx.common
    secrets: list[Path] = []
    env = {**os.environ}
    selection = modules.selection(arch=c.arch)
    mirror_url = mirror()
    env.update({
        "ELEMENTS_PATH": str(ELEMENTS), "DIB_RELEASE": c.release,
        "DIB_IMAGE_CACHE": str(ctx.cache / "image-create"),
        "DIB_DISTRIBUTION_MIRROR": mirror_url,
        "DIB_DEBIAN_SECURITY_MIRROR": mirror_url.removesuffix("/debian") + "/debian-security",
        "DIB_DEBOOTSTRAP_CACHE": "1", "DIB_DEBIAN_USE_DEBOOTSTRAP_CACHE": "1",
        "DIB_LEAN_IPA_WHEEL": str(ctx.wheel),
        "DIB_LEAN_IPA_HOST_PYTHON": str(ctx.venv / "bin/python"),
        "DIB_LEAN_IPA_EXTRA_MODULES": " ".join(c.extra_modules),
        "DIB_LEAN_IPA_KEEP_MODULES": " ".join(selection.names),
        "DIB_LEAN_IPA_PRUNE_MODULES": env.get("DIB_LEAN_IPA_PRUNE_MODULES",
                                              " ".join(selection.dib_prune)),
        "DIB_LEAN_IPA_CA_BUNDLE": str(ctx.ca_bundle or ""),
        "DIB_LEAN_IPA_EXTRA_HARDWARE": "1" if ctx.extra_hardware else "0",
        "DIB_LEAN_IPA_SSH_KEYS": "", "DIB_LEAN_IPA_ROOT_PASSWORD_HASH": "",
        "DIB_LEAN_IPA_ROOT_PASSWORD_HASH_FILE": "",
        "PATH": f"{ctx.venv / 'bin'}:{os.environ.get('PATH', '')}",
    })
    env.update(arch_environment(ctx.arch, env.get("DIB_MMDEBSTRAP_EXTRA_ARGS", "")))
    (ctx.cache / "image-create").mkdir(parents=True, exist_ok=True)
    try:
        if c.ssh_keys:
            keyfile = ctx.out / ".ssh-keys"
            keyfile.write_text("\n".join(c.ssh_keys) + "\n")
            secrets.append(keyfile)
            env["DIB_LEAN_IPA_SSH_KEYS"] = str(keyfile)
        if c.password_hash:  # through a file: DIB traces its environment into the log
            hashfile = ctx.out / ".password-hash"
            hashfile.touch(0o600)
            hashfile.write_text(c.password_hash + "\n")
            secrets.append(hashfile)
            env["DIB_LEAN_IPA_ROOT_PASSWORD_HASH_FILE"] = str(hashfile)
        argv = ["disk-image-create", "-o", str(ctx.out / ctx.name)]
        if ctx.packages:
            argv += ["-p", ",".join(ctx.packages)]
        argv += element_list(ctx)
        run_phases(ctx, argv, env)
    finally:
        for secret in secrets:
            secret.unlink(missing_ok=True)


def arch_environment(arch: arches.Arch, mmdebstrap_args: str = "") -> dict[str, str]:
    """What tells diskimage-builder the image's architecture: ``ARCH`` (dpkg's name;
    debian-minimal picks linux-image-<ARCH> by it, debootstrap --arch), the wheels'
    platform tags for the agent element, and for another architecture than the
    host's, mmdebstrap without its arch-test check (emulation.ensure has run an
    arm64 program in a chroot already)."""
    env = {"ARCH": arch.debian}
    if not arch.native:
        env["DIB_LEAN_IPA_WHEEL_PLATFORMS"] = " ".join(arch.wheel_platforms())
        if "--skip=check/qemu" not in mmdebstrap_args:
            env["DIB_MMDEBSTRAP_EXTRA_ARGS"] = (mmdebstrap_args + " --skip=check/qemu").strip()
    return env


def run_phases(ctx: Context, argv: list[str], env: dict[str, str]) -> None:
    """disk-image-create through the log, one progress line per DIB phase."""
    phase = ["start"]

    def line(text: str) -> None:
        m = PHASE.search(text)
        if m and m.group(2) != phase[0]:
            phase[0] = m.group(2)
            ctx.log.say(f"phase {phase[0]}")

    try:
        ctx.log.run(argv, env=env, on_line=line)
    except BuildError as exc:
        raise BuildError(f"disk-image-create failed in phase '{phase[0]}' ({exc}); "
                         f"see {ctx.log.path}") from None


def parse_args(argv: list[str]) -> Context:
    env = options.env
    p = argparse.ArgumentParser(prog="build.sh dib", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    options.add_common(p, "dib", "lean-ipa")
    p.set_defaults(release=env("RELEASE", os.environ.get("DIB_RELEASE", "bookworm")))
    p.add_argument("-o", dest="name", help=argparse.SUPPRESS)
    p.add_argument("--module", dest="extra_modules", action="append",
                   help="alias of --extra-modules")
    p.add_argument("--package", "-p", action="append", default=[env("PACKAGES")],
                   help="more Debian packages (comma separated, repeatable)")
    p.add_argument("--element", "-e", action="append", default=[env("ELEMENTS")],
                   help="more diskimage-builder elements (repeatable)")
    p.add_argument("--login", action="store_true",
                   help="add the lean-ipa-login element (also implied by --ssh-key and "
                        "--password-hash)")
    p.add_argument("--ca-bundle", default=env("CA_BUNDLE") or None,
                   help="PEM file of extra CAs the agent trusts")
    options.add_extra_hardware(p, "DIB_LEAN_IPA_EXTRA_HARDWARE")
    p.add_argument("--cache", type=Path, default=options.cache_dir())
    a = p.parse_args(argv)
    if env("MODULES"):
        a.extra_modules.append(env("MODULES"))
    a.rebuild = a.rebuild or env("FORCE") not in ("", "0")
    common = options.common(p, a, "dib", supported=("x86_64", "arm64"))
    ca = Path(a.ca_bundle).resolve() if a.ca_bundle else None
    if ca is not None and not ca.is_file():
        p.error(f"--ca-bundle {a.ca_bundle}: no such file")
    elements = options.words(a.element) + (["lean-ipa-login"] if a.login else [])
    return Context(common=common, cache=a.cache.resolve(), packages=options.words(a.package),
                   elements=list(dict.fromkeys(elements)), ca_bundle=ca,
                   extra_hardware=a.extra_hardware)


def main(argv: list[str]) -> int:
    ctx = parse_args(argv)
    try:
        build(ctx)
    except BuildError as exc:
        print(f"build.sh dib: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
