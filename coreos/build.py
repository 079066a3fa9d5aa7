# SPDX-License-Identifier: Apache-2.0
"""Build the coreos variant: the agent container run by systemd-nspawn on a systemd host.

``build(ctx)`` reads as the table of contents. Every slow input is cached under
``$CACHE/coreos`` by a key of what went into it (package lists, mirror, wheel
contents, Containerfile), so a rebuild with nothing changed takes seconds.

Outputs in ``out/coreos/``: ``<name>.kernel``, ``<name>.initramfs``,
``<name>.manifest``, ``sha256sums`` and ``build.log``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import threading
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from buildlib import arch as arches
from buildlib import emulation, host, modules, options, outputs, programs, signature
from coreos import container, kernel, units
from coreos.runner import BuildError, Runner

HERE = Path(__file__).resolve().parent
TOP = HERE.parent
# The host's own Debian mirror (deb822 on Debian 12, the one-line format before).
SOURCES = next((p for p in (Path("/etc/apt/sources.list.d/debian.sources"),
                            Path("/etc/apt/sources.list")) if p.exists()),
               Path("/etc/apt/sources.list.d/debian.sources"))
# The mirror here is a dated snapshot: its Release files are past Valid-Until.
APT_OPTIONS = ('Acquire::Check-Valid-Until "false"', 'Acquire::Check-Date "false"')
# force-unsafe-io: no fsync per file; the tree is a throwaway until it is a tarball.
DPKG_OPTIONS = ("force-unsafe-io", "path-exclude=/usr/share/man/*", "path-exclude=/usr/share/doc/*",
                "path-exclude=/usr/share/locale/*", "path-exclude=/usr/share/info/*",
                "path-include=/usr/share/doc/*/copyright")
# Installed by minbase's dependency choices, never used at run time: purged from both
# rootfs trees at the end of mmdebstrap (~50 MB of perl).
PURGE = ("usrmerge", "libfile-find-rule-perl", "libnumber-compare-perl", "libtext-glob-perl",
         "perl", "perl-modules-5.36", "libperl5.36", "apt")
# Never needed on the running host: package tooling leftovers (<triplet>: the
# architecture's library directory, x86_64-linux-gnu or aarch64-linux-gnu).
HOST_PRUNE = ("usr/share/perl", "usr/share/perl5", "usr/lib/<triplet>/perl",
              "usr/lib/<triplet>/perl-base", "var/cache/apt", "var/lib/apt/lists",
              "usr/share/bash-completion", "usr/share/zsh", "usr/share/lintian",
              "usr/share/common-licenses", "usr/lib/apt", "var/log")


class Job:
    """A build step on a thread; wait() re-raises its error in the caller."""

    def __init__(self, target: Callable[[], None]) -> None:
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(target,), daemon=True)
        self.thread.start()

    def _run(self, target: Callable[[], None]) -> None:
        try:
            target()
        except BaseException as exc:  # noqa: BLE001 - handed to wait()
            self.error = exc

    def wait(self) -> None:
        self.thread.join()
        if self.error is not None:
            raise self.error


@dataclass
class Context:
    """One build's inputs (from the command line) and what stages hand on."""

    name: str
    out: Path
    cache: Path
    suite: str = "bookworm"
    sources: Path = SOURCES
    engine: str = "auto"
    host_config: Path | None = None
    ssh_keys: list[str] = field(default_factory=list)
    host_kernel: Path | None = None
    host_initrd: Path | None = None
    rebuild: bool = False
    extra_hardware: bool = False
    common: options.Common | None = None
    runner: Runner = field(init=False)
    wheel: Path = field(init=False)
    wheels: Path = field(init=False)
    container_rootfs: Path = field(init=False)
    container_image: Path = field(init=False)
    host_rootfs: Path = field(init=False)
    kernel_deb: Path = field(init=False)
    host_job: Job | None = field(default=None, init=False)
    config: dict[str, object] = field(default_factory=dict, init=False)
    keys: dict[str, str] = field(default_factory=dict, init=False)

    @property
    def work(self) -> Path:
        return self.cache / "coreos"

    @property
    def arch(self) -> arches.Arch:
        return arches.get(self.common.arch if self.common else arches.DEFAULT)

    def cached(self, kind: str, key: str, suffix: str = "") -> Path:
        """A cache entry's path: <kind>[-arm64]-<key><suffix> (x86_64's as before)."""
        return self.work / f"{kind}{self.arch.suffix}-{key}{suffix}"


def build(ctx: Context) -> None:
    ctx.out.mkdir(parents=True, exist_ok=True)
    ctx.work.mkdir(parents=True, exist_ok=True)
    ctx.runner = Runner(ctx.out / "build.log")
    ctx.runner.say(f"building {ctx.name} into {ctx.out} (log: {ctx.out / 'build.log'})")
    load_host_config(ctx)
    prepare_emulation(ctx)
    start_host_rootfs(ctx)
    try:
        build_stages(ctx)
    finally:
        if ctx.host_job is not None:  # never leave mmdebstrap running behind us
            ctx.host_job.thread.join()


def build_stages(ctx: Context) -> None:
    make_wheel(ctx)
    fetch_wheels(ctx)
    make_container_rootfs(ctx)
    make_container_image(ctx)
    if outputs_current(ctx):
        ctx.runner.say(f"{ctx.name}: outputs up to date")
        if ctx.common is not None and ctx.common.ironic_layout:
            c = ctx.common
            outputs.ironic_layout(ctx.out, ctx.name, c.ironic_flavor, c.ironic_branch)
        return
    if ctx.host_initrd is None:
        make_host_rootfs(ctx)
        fetch_kernel(ctx)
        make_host_initramfs(ctx)
    else:
        append_oem_archive(ctx)
    write_manifest(ctx)
    ctx.runner.say(f"done: {ctx.out / (ctx.name + '.kernel')}, "
                   f"{ctx.out / (ctx.name + '.initramfs')}")


# -- keys and caching -------------------------------------------------------------------


def digest(*parts: str | bytes | Path) -> str:
    """A short sha256 over strings, bytes and file contents."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path):
            h.update(part.read_bytes())
        else:
            h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:16]


sha256 = outputs.sha256


def read_list(path: Path) -> list[str]:
    """A package list file: one name per line, # comments."""
    return [line.split("#")[0].strip() for line in path.read_text().splitlines()
            if line.split("#")[0].strip()]


def publish(tmp: Path, final: Path) -> Path:
    """Move a finished cache entry into place and drop older entries of its kind.

    Entries are named ``<kind>-<key><suffix>``; only the newest of each kind is kept
    (every agent change makes a new container image: ~90 MB each).
    """
    os.replace(tmp, final)
    kind = final.name.rsplit("-", 1)[0]
    for old in final.parent.glob(f"{kind}-*{final.suffix}"):
        if old != final and old.name.rsplit("-", 1)[0] == kind:
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)
    return final


# -- stages -------------------------------------------------------------------------------


def prepare_emulation(ctx: Context) -> None:
    """Another architecture's trees run their programs here through qemu-user
    (buildlib/emulation.py): mmdebstrap's maintainer scripts, the container's RUN."""
    if ctx.arch.native:
        return
    with ctx.runner.step("emulation") as notes:
        try:
            host.ensure(["emulation"])
        except host.HostError as exc:
            raise BuildError(str(exc)) from None
        emulation.ensure(ctx.arch, ctx.runner.note)
        notes.append(f"{ctx.arch.machine} programs run through {ctx.arch.emulator}")


def load_host_config(ctx: Context) -> None:
    override = ctx.host_config.read_text() if ctx.host_config else None
    ctx.config = units.load_config((HERE / "host-config.yaml").read_text(), override)


def make_wheel(ctx: Context) -> None:
    """The agent wheel from this checkout (./build.sh wheel), copied aside at once."""
    with ctx.runner.stage("agent wheel"):
        found = ctx.runner.run([TOP / "build.sh", "wheel"], capture=True).split()
        wheels = [Path(w) for w in found if w.endswith(".whl")]
        if len(wheels) != 1:
            raise BuildError(f"./build.sh wheel gave {found}, expected one wheel")
        ctx.wheel = ctx.work / wheels[0].name
        shutil.copyfile(wheels[0], ctx.wheel)
        with zipfile.ZipFile(ctx.wheel) as whl:
            record = next(n for n in whl.namelist() if n.endswith(".dist-info/RECORD"))
            # RECORD hashes every file in the wheel but no timestamps: a stable key.
            ctx.keys["wheel"] = digest(whl.read(record))


def fetch_wheels(ctx: Context) -> None:
    """The agent's PyPI dependencies (and pip) as wheels, downloaded on the host."""
    with ctx.runner.stage("python wheels"):
        with zipfile.ZipFile(ctx.wheel) as whl:
            meta = next(n for n in whl.namelist() if n.endswith(".dist-info/METADATA"))
            requires = sorted(line for line in whl.read(meta).decode().splitlines()
                              if line.startswith("Requires-Dist:") and "extra ==" not in line)
        extra = extra_python(ctx)
        platforms = ctx.arch.wheel_platforms()
        ctx.keys["wheels"] = key = digest(*requires, *extra, "extra.txt", *platforms)
        final = ctx.cached("wheels", key)
        if not final.exists() or ctx.rebuild:
            tmp = Path(tempfile.mkdtemp(prefix="wheels.", dir=ctx.work))
            ctx.runner.run([*container.pip_download(pip_python(ctx), tmp, platforms),
                            ctx.wheel, "pip", *extra])
            # The Containerfile installs these beside the agent.
            (tmp / "extra.txt").write_text("".join(f"{r}\n" for r in extra))
            for old in tmp.glob("lean_ipa-*.whl"):
                old.unlink()
            shutil.rmtree(final, ignore_errors=True)
            publish(tmp, final)
        ctx.wheels = final
        ctx.runner.note(f"wheels: {sorted(p.name for p in final.glob('*.whl'))}")


def extra_python(ctx: Context) -> list[str]:
    """PyPI distributions installed beside the agent (build options)."""
    return ["hardware"] if ctx.extra_hardware else []


def pip_python(ctx: Context) -> str:
    """A Python with pip for downloads: build.sh's build venv, else python3."""
    venv = Path(os.environ.get("CACHE", TOP / ".cache")) / "venv-build/bin/python"
    return os.fspath(venv) if venv.exists() else shutil.which("python3") or sys.executable


def mmdebstrap(ctx: Context, packages: list[str], target: Path,
               runner: Runner | None = None) -> None:
    argv: list[str | Path] = ["mmdebstrap", "--variant=minbase", "--format=tar",
                              f"--architectures={ctx.arch.debian}",
                              "--include=" + ",".join(packages)]
    if not ctx.arch.native:
        # prepare_emulation has run an arm64 program in a chroot: what
        # mmdebstrap's check (with arch-test, not installed) would find out.
        argv.append("--skip=check/qemu")
    argv += [f"--aptopt={o}" for o in APT_OPTIONS]
    argv += [f"--dpkgopt={o}" for o in DPKG_OPTIONS]
    argv.append('--customize-hook=chroot "$1" dpkg --purge --force-depends ' + " ".join(PURGE))
    (runner or ctx.runner).run([*argv, ctx.suite, target, ctx.sources])


# Debian packages of --extra-hardware: what python-hardware's hardware-detect reads
# (ethtool and pciutils are in packages-container.txt already).
EXTRA_HARDWARE_PACKAGES = ["lshw", "ethtool", "pciutils"]


def container_packages(extra_hardware: bool = False) -> list[str]:
    """coreos/packages-container.txt plus the packages of the agent's programs."""
    own = read_list(HERE / "packages-container.txt")
    more = programs.packages("coreos") + (EXTRA_HARDWARE_PACKAGES if extra_hardware else [])
    return own + [p for p in dict.fromkeys(more) if p not in own]


def make_container_rootfs(ctx: Context) -> None:
    """The container's Debian rootfs tarball (mmdebstrap), cached by its inputs."""
    with ctx.runner.stage("container rootfs (mmdebstrap)"):
        packages = container_packages(ctx.extra_hardware)
        ctx.keys["container-rootfs"] = key = digest(
            ctx.suite, ctx.sources, *packages, *APT_OPTIONS, *DPKG_OPTIONS, *PURGE)
        final = ctx.cached("container-rootfs", key, ".tar")
        if not final.exists() or ctx.rebuild:
            tmp = final.with_suffix(".tmp.tar")
            mmdebstrap(ctx, packages, tmp)
            publish(tmp, final)
        ctx.container_rootfs = final


def make_container_image(ctx: Context) -> None:
    """Containerfile -> image (buildah/podman/docker) -> rootfs squashfs, cached."""
    with ctx.runner.stage("container image"):
        ctx.keys["container"] = key = digest(
            HERE / "Containerfile", ctx.keys["container-rootfs"], ctx.keys["wheels"],
            ctx.keys["wheel"])
        final = ctx.cached("container", key, ".squashfs")
        if not final.exists() or ctx.rebuild:
            engine = container.pick_engine(ctx.engine, ctx.work / "containers",
                                           install=install_engine, log=ctx.runner.say)
            with tempfile.TemporaryDirectory(prefix="context.", dir=ctx.work) as tmp:
                context = Path(tmp)
                os.link(ctx.container_rootfs, context / "rootfs.tar")
                shutil.copytree(ctx.wheels, context / "wheels")
                shutil.copyfile(ctx.wheel, context / "wheels" / ctx.wheel.name)
                shutil.copyfile(HERE / "Containerfile", context / "Containerfile")
                squashfs = final.with_suffix(".tmp")
                container.build_and_export(
                    ctx.runner, engine, ctx.work / "containers", context,
                    f"localhost/lean-ipa-agent:{key}{ctx.arch.suffix}", squashfs,
                    platform=None if ctx.arch.native else f"linux/{ctx.arch.debian}")
            publish(squashfs, final)
            ctx.runner.note(f"container image built with {engine}")
        ctx.container_image = final
        ctx.runner.say(f"container image {final.stat().st_size >> 20} MiB (squashfs)")


def install_engine(package: str) -> None:
    """apt-get install a container engine (buildlib/host-programs.toml, [coreos.engines])."""
    try:
        host.apt_install([host.needs(["coreos"]).engines[package]], "coreos")
    except host.HostError as exc:
        raise BuildError(str(exc)) from None


def outputs_current(ctx: Context) -> bool:
    """True when out/ already holds a build of exactly these inputs."""
    host = ("host-initrd", sha256(ctx.host_initrd)) if ctx.host_initrd else ("host", "built")
    ctx.keys["outputs"] = digest(
        ctx.keys["container"], *host, *(units.RENDERED), repr(sorted(ctx.config.items())),
        "\n".join(ctx.ssh_keys), ctx.common.password_hash or "" if ctx.common else "",
        " ".join(ctx.common.extra_modules) if ctx.common else "", modules.LIST,
        *(p for p in sorted(HERE.glob("*.py"))), *(sorted((HERE / "units").iterdir())),
        HERE / "packages-host.txt")
    manifest = ctx.out / f"{ctx.name}.manifest"
    wanted = f"input key {ctx.keys['outputs']}"
    return (not ctx.rebuild and manifest.exists()
            and wanted in manifest.read_text().splitlines()
            and all((ctx.out / f"{ctx.name}.{s}").exists() for s in ("kernel", "initramfs")))


def start_host_rootfs(ctx: Context) -> None:
    """Start the host's mmdebstrap in the background when it is not cached.

    The two mmdebstrap runs are the slowest stages and independent: running them
    side by side takes a fresh build from their sum to about the longer one.
    """
    ctx.host_job = None
    if ctx.host_initrd is not None:
        return
    packages = read_list(HERE / "packages-host.txt")
    ctx.keys["host-rootfs"] = key = digest(
        ctx.suite, ctx.sources, *packages, *APT_OPTIONS, *DPKG_OPTIONS, *PURGE)
    ctx.host_rootfs = final = ctx.cached("host-rootfs", key, ".tar")
    if final.exists() and not ctx.rebuild:
        return
    runner = Runner(ctx.out / "host-rootfs.log")

    def job() -> None:
        tmp = final.with_suffix(".tmp.tar")
        mmdebstrap(ctx, packages, tmp, runner)
        publish(tmp, final)

    ctx.host_job = Job(job)


def make_host_rootfs(ctx: Context) -> None:
    """The host's Debian rootfs tarball (systemd, nspawn, udev, networkd), cached."""
    with ctx.runner.stage("host rootfs (mmdebstrap, started in the background)"):
        if ctx.host_job is not None:
            ctx.host_job.wait()
            ctx.runner.note((ctx.out / "host-rootfs.log").read_text())
            (ctx.out / "host-rootfs.log").unlink()


def fetch_kernel(ctx: Context) -> None:
    """Debian's current linux-image-<arch> kernel package, downloaded on the host
    (the signed one: linux-image-amd64 and linux-image-arm64 depend on it)."""
    if not ctx.arch.native:
        fetch_foreign_kernel(ctx)
        return
    with ctx.runner.stage("kernel package"):
        depends = ctx.runner.run(["apt-cache", "depends", "linux-image-amd64"], capture=True)
        image = next((line.split(":", 1)[1].strip() for line in depends.splitlines()
                      if line.strip().startswith("Depends: linux-image-")), None)
        if image is None:
            ctx.runner.run(["apt-get", "-o", "DPkg::Lock::Timeout=900", "update", "-q"])
            depends = ctx.runner.run(["apt-cache", "depends", "linux-image-amd64"],
                                     capture=True)
            image = next((line.split(":", 1)[1].strip() for line in depends.splitlines()
                          if line.strip().startswith("Depends: linux-image-")), None)
        if image is None:
            raise BuildError("apt knows no linux-image-amd64; is the Debian mirror configured?")
        debs = ctx.work / "debs"
        debs.mkdir(exist_ok=True)
        found = sorted(debs.glob(f"{image}_*.deb"))
        if not found:
            ctx.runner.run(["apt-get", "download", "-q", image], cwd=debs)
            found = sorted(debs.glob(f"{image}_*.deb"))
        ctx.kernel_deb = found[-1]
        ctx.runner.note(f"kernel package: {ctx.kernel_deb.name}")


def fetch_foreign_kernel(ctx: Context) -> None:
    """linux-image-arm64's kernel package, through an apt of its own for that
    architecture (tinyipa/debs.py: the host's apt knows its own architecture only)."""
    from tinyipa.debs import Apt

    with ctx.runner.stage(f"kernel package ({ctx.arch.debian})"):
        meta = f"linux-image-{ctx.arch.debian}"
        apt = Apt(ctx.work, ctx.suite, ctx.runner, arch=ctx.arch.debian)
        apt.update()
        plan = apt.resolve([meta])
        name = kernel.image_package([p.name for p in plan], ctx.arch.debian)
        if name is None:
            raise BuildError(f"{meta} depends on no linux-image-<version>-{ctx.arch.debian}")
        ctx.kernel_deb = apt.download([p for p in plan if p.name == name])[0]
        ctx.runner.note(f"kernel package: {ctx.kernel_deb.name}")


def install_oem(ctx: Context, root: Path) -> None:
    """/usr/share/oem (image, host config, keys) and the rendered units into root."""
    oem = root / "usr/share/oem"
    oem.mkdir(parents=True, exist_ok=True)
    image = oem / str(ctx.config["container_image"])
    shutil.copyfile(ctx.container_image, image)
    (oem / "host-config.yaml").write_text(
        "# The host configuration this image was built with (see coreos/host-config.yaml).\n"
        + units.yaml.safe_dump(ctx.config, sort_keys=False))
    if ctx.ssh_keys:
        (oem / "authorized_keys").write_text("\n".join(ctx.ssh_keys) + "\n")
        (oem / "authorized_keys").chmod(0o644)
    for path, text in units.render_units(ctx.config).items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    for link, target in units.ENABLED.items():
        (root / link).parent.mkdir(parents=True, exist_ok=True)
        (root / link).unlink(missing_ok=True)
        (root / link).symlink_to(target)


def configure_host(root: Path, triplet: str = arches.ARCHES[arches.DEFAULT].triplet) -> None:
    """What a systemd that runs straight from the initramfs needs, and less bulk."""
    for rel in HOST_PRUNE:
        shutil.rmtree(root / rel.replace("<triplet>", triplet), ignore_errors=True)
    (root / "var/log").mkdir(parents=True, exist_ok=True)
    (root / "init").unlink(missing_ok=True)
    # No /etc/initrd-release: systemd runs the initramfs as the real system.
    (root / "init").symlink_to("usr/lib/systemd/systemd")
    (root / "etc/machine-id").write_text("")   # empty: systemd makes one per boot
    (root / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    (root / "etc/hostname").write_text("lean-ipa-host\n")
    (root / "etc/fstab").write_text("# the root is the initramfs; nothing to mount\n")
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()  # never ship one host key in every image; made at boot
    resolv = root / "etc/resolv.conf"
    resolv.unlink(missing_ok=True)
    resolv.symlink_to("/run/systemd/resolve/stub-resolv.conf")
    (root / "usr/lib/firmware").mkdir(parents=True, exist_ok=True)


def make_cpio(ctx: Context, root: Path, target: Path, compress: bool) -> None:
    """A newc cpio of root (sorted names, owners kept) into target, zstd-compressed or not."""
    names = sorted(os.path.relpath(os.path.join(d, n), root)
                   for d, dirs, files in os.walk(root) for n in dirs + files)
    raw = target.with_suffix(".cpio")
    ctx.runner.run(["cpio", "--quiet", "--null", "-o", "-H", "newc"], cwd=root,
                   stdin=b"\0".join(n.encode() for n in names) + b"\0", stdout=raw)
    if compress:
        ctx.runner.run(["zstd", "-q", "-f", "-T0", "-10", "--rm", raw, "-o", target])
    else:
        os.replace(raw, target)


def make_host_initramfs(ctx: Context) -> None:
    """Host rootfs + pruned kernel modules + OEM area as one initramfs, and the kernel."""
    with ctx.runner.stage("host initramfs"):
        with tempfile.TemporaryDirectory(prefix="host.", dir=ctx.work) as tmp:
            root = Path(tmp) / "root"
            root.mkdir()
            ctx.runner.run(["tar", "-x", "-p", "--numeric-owner", "-f", ctx.host_rootfs,
                            "-C", root])
            configure_host(root, ctx.arch.triplet)
            version = kernel.install_kernel(
                ctx.runner, ctx.kernel_deb, root, ctx.out / f"{ctx.name}.kernel",
                ctx.common.extra_modules if ctx.common else (),
                names=modules.selection(arch=ctx.arch.name).names)
            if ctx.common is not None and ctx.common.password_hash:
                set_root_password(root, ctx.common.password_hash)
            ctx.keys["kernel-version"] = version
            install_oem(ctx, root)
            make_cpio(ctx, root, ctx.out / f"{ctx.name}.initramfs", compress=True)


def set_root_password(root: Path, password_hash: str) -> None:
    """root's console login on the host (--password-hash); off (``*``) otherwise."""
    shadow = root / "etc/shadow"
    lines = shadow.read_text().splitlines()
    lines = [f"root:{password_hash}:" + line.split(":", 2)[2] if line.startswith("root:")
             else line for line in lines]
    shadow.write_text("\n".join(lines) + "\n")
    shadow.chmod(0o640)


def append_oem_archive(ctx: Context) -> None:
    """A user's systemd host: their initrd, then our OEM content as an extra cpio."""
    assert ctx.host_kernel is not None and ctx.host_initrd is not None
    with ctx.runner.stage("OEM archive for the given host"):
        with tempfile.TemporaryDirectory(prefix="oem.", dir=ctx.work) as tmp:
            root = Path(tmp) / "root"
            root.mkdir()
            install_oem(ctx, root)
            extra = Path(tmp) / "oem.cpio"
            make_cpio(ctx, root, extra, compress=False)
            target = ctx.out / f"{ctx.name}.initramfs"
            with open(target, "wb") as out:
                with open(ctx.host_initrd, "rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
                # The kernel skips zero padding between archives; a plain cpio
                # must start on a 4-byte boundary.
                out.write(b"\0" * (-out.tell() % 4))
                with open(extra, "rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
        shutil.copyfile(ctx.host_kernel, ctx.out / f"{ctx.name}.kernel")


def write_manifest(ctx: Context) -> None:
    """A sorted, line-based manifest (diffs cleanly) and sha256sums."""
    with ctx.runner.stage("manifest"):
        c = ctx.common
        lines = outputs.common_inputs("coreos", ctx.name, ctx.suite, c.arch if c else "x86_64")
        lines += [f"input key {ctx.keys['outputs']}", f"input suite {ctx.suite}",
                  f"input wheel {ctx.wheel.name}"]
        lines += [f"input extra-module {m}" for m in (c.extra_modules if c else [])]
        lines += [f"input extra-python {r}" for r in extra_python(ctx)]
        lines += [f"input ssh-keys {len(ctx.ssh_keys)}",
                  f"input password {'set' if c and c.password_hash else 'none'}"]
        lines += [f"cache {name} {value}" for name, value in sorted(ctx.keys.items())
                  if name != "outputs"]
        if ctx.host_initrd is not None:
            lines.append(f"host initrd {ctx.host_initrd.name} sha256:{sha256(ctx.host_initrd)}")
        else:
            lines.append(f"host kernel-package {ctx.kernel_deb.name}")
        lines.append(f"container image {ctx.container_image.stat().st_size} bytes")
        lines.append(signature.check_kernel(ctx.out / f"{ctx.name}.kernel", ctx.cache,
                                            ctx.runner).manifest_line())
        lines += sorted(f"python {p.name}" for p in ctx.wheels.glob("*.whl"))
        outputs.publish(ctx.out, ctx.name, lines)
        if c is not None and c.ironic_layout:
            outputs.ironic_layout(ctx.out, ctx.name, c.ironic_flavor, c.ironic_branch)
        for suffix in ("kernel", "initramfs"):
            size = (ctx.out / f"{ctx.name}.{suffix}").stat().st_size
            ctx.runner.say(f"{ctx.name}.{suffix}: {size / 1e6:.1f} MB")


# -- command line ---------------------------------------------------------------------


def parse_args(argv: list[str]) -> Context:
    parser = argparse.ArgumentParser(
        prog="build.sh coreos",
        description="The agent container run by systemd-nspawn on a systemd host image.")
    options.add_common(parser, "coreos", "lean-ipa-coreos")
    parser.add_argument("--cache", type=Path, default=options.cache_dir())
    parser.add_argument("--sources", type=Path, default=SOURCES,
                        help="apt sources file for mmdebstrap (default: %(default)s)")
    parser.add_argument("--engine", default=options.env("ENGINE", "auto"),
                        choices=("auto", "buildah", "podman", "docker"),
                        help="container build tool (auto: the first of buildah, podman, "
                             "docker that works; buildah is installed when none does)")
    parser.add_argument("--host-config", type=Path,
                        help="YAML merged over coreos/host-config.yaml")
    parser.add_argument("--authorized-keys", type=Path,
                        help="file of ssh public keys for the host's login (OEM "
                             "authorized_keys; --ssh-key adds keys too)")
    parser.add_argument("--host-kernel", type=Path,
                        help="kernel of a systemd PXE host to use instead of ours")
    parser.add_argument("--host-initrd", type=Path,
                        help="initrd of that host; the OEM content is appended as a cpio")
    options.add_extra_hardware(parser)
    args = parser.parse_args(argv)
    common = options.common(parser, args, "coreos", supported=("x86_64", "arm64"))
    if (args.host_kernel is None) != (args.host_initrd is None):
        parser.error("--host-kernel and --host-initrd go together")
    for path in (args.host_config, args.authorized_keys, args.host_kernel, args.host_initrd):
        if path is not None and not path.is_file():
            parser.error(f"{path}: no such file")
    if args.host_initrd is not None and (common.password_hash or common.extra_modules):
        parser.error("--password-hash and --extra-modules apply to our host image, "
                     "not to one given with --host-initrd")
    keys = list(common.ssh_keys)
    if args.authorized_keys is not None:
        keys = options.ssh_keys([str(args.authorized_keys)]) + keys
    return Context(name=common.name, out=common.output, cache=args.cache.resolve(),
                   suite=common.release, sources=args.sources, engine=args.engine,
                   host_config=args.host_config, ssh_keys=keys,
                   host_kernel=args.host_kernel, host_initrd=args.host_initrd,
                   rebuild=common.rebuild, extra_hardware=args.extra_hardware, common=common)


def main(argv: list[str]) -> int:
    try:
        ctx = parse_args(argv)
        build(ctx)
    except (BuildError, units.ConfigError) as exc:
        print(f"build.sh coreos: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
