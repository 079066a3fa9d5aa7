# SPDX-License-Identifier: Apache-2.0
"""Build the tinyipa kernel + initramfs from Debian packages and the agent wheel.

``build(ctx)`` reads as the table of contents; each stage logs one progress
line with its elapsed time, and a failing stage names itself and the log.
"""

from __future__ import annotations

import gzip
import hashlib
import lzma
import os
import re
import shutil
import sys
import time
import tomllib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from buildlib import arch, modules, outputs, programs, signature
from buildlib.options import Common
from tinyipa import cpio, debs, stub
from tinyipa.debs import Apt, Package, PackageTree
from tinyipa.log import Log, run
from tinyipa.root import Root

HERE = Path(__file__).resolve().parent
SITE = "/usr/lib/python3/dist-packages"
GROUPS = ("root:0 daemon:1 bin:2 sys:3 adm:4 tty:5 disk:6 lp:7 mail:8 kmem:9 dialout:20 "
          "cdrom:24 floppy:25 tape:26 sudo:27 audio:29 video:44 sgx:106 kvm:107 render:108 "
          "input:109 nogroup:65534")


@dataclass
class Context:
    """Everything one build needs, passed explicitly from the command line."""

    wheel: Path
    out: Path
    cache: Path
    name: str = "tinyipa"
    release: str = "bookworm"
    arch: str = "x86_64"
    extra_modules: list[str] = field(default_factory=list)
    extra_packages: list[str] = field(default_factory=list)
    extra_python: list[str] = field(default_factory=list)
    ssh_keys: list[str] = field(default_factory=list)
    password_hash: str | None = None
    ca_bundle: Path | None = None
    compression: str = "zstd"
    options: list[str] = field(default_factory=list)  # [options.<name>] of tinyipa.toml
    pip_python: str = sys.executable
    refresh: bool = False
    rebuild: bool = False
    common: Common | None = None
    config: dict[str, Any] = field(default_factory=dict)
    # filled in while building
    log: Log = field(init=False)
    root: Root = field(init=False)
    packages: list[Package] = field(default_factory=list, init=False)
    kernel_version: str = field(default="", init=False)
    python_version: str = field(default="", init=False)   # "3.11", from the packages
    secure_boot: str = field(default="", init=False)      # the manifest's secure_boot line
    dists: dict[str, str] = field(default_factory=dict, init=False)

    @property
    def workdir(self) -> Path:
        return self.cache / "work" / self.name

    @property
    def cpu(self) -> arch.Arch:
        return arch.get(self.arch)


def apply_options(config: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """*config* with the ``[options.<name>]`` tables of *names* merged in."""
    merged = {k: v for k, v in config.items() if k != "options"}
    known = config.get("options", {})
    for name in names:
        if name not in known:
            raise ValueError(f"unknown build option {name!r} "
                             f"(tinyipa.toml has {', '.join(sorted(known))})")
        for key, value in known[name].items():
            if key == "python_unprune":
                merged["python_prune"] = [p for p in merged.get("python_prune", [])
                                          if p not in value]
            elif isinstance(value, dict):
                merged[key] = {**merged.get(key, {}), **value}
            else:
                merged[key] = list(merged.get(key, [])) + [v for v in value
                                                           if v not in merged.get(key, [])]
    return merged


def for_arch(config: dict[str, Any], cpu: arch.Arch) -> dict[str, Any]:
    """*config* for one architecture: ``{arch}`` in package names is dpkg's name
    for it and ``{triplet}`` its library directory's. Another architecture than
    the host's gets no stub libraries (they are compiled here, and nothing is
    compiled for another architecture): the real libraries go in instead."""
    def fill(value: Any) -> Any:
        if isinstance(value, str):
            return value.replace("{arch}", cpu.debian).replace("{triplet}", cpu.triplet)
        if isinstance(value, list):
            return [fill(v) for v in value]
        return value

    merged = {k: fill(v) for k, v in config.items()}
    if not cpu.native:
        merged["stubs"] = {}
    return merged


def build(ctx: Context) -> None:
    ctx.out.mkdir(parents=True, exist_ok=True)
    ctx.log = Log(ctx.out / "build.log")
    ctx.config = for_arch(apply_options(tomllib.loads((HERE / "tinyipa.toml").read_text()),
                                        ctx.options), ctx.cpu)
    ctx.extra_python += [p for p in ctx.config.pop("python", []) if p not in ctx.extra_python]
    ctx.log.say(f"tinyipa: building {ctx.name} ({ctx.release}, {ctx.arch}) into {ctx.out}; "
                f"log {ctx.log.path}")
    fetch_packages(ctx)
    unpack_packages(ctx)
    install_base(ctx)
    install_python(ctx)
    install_agent(ctx)
    install_kernel_modules(ctx)
    configure_login(ctx)
    install_busybox(ctx)
    stub.install(ctx)
    compile_python(ctx)
    make_initramfs(ctx)
    check_signature(ctx)
    write_manifest(ctx)
    if ctx.common is not None and ctx.common.ironic_layout:
        with ctx.log.step("ironic layout") as notes:
            written = outputs.ironic_layout(ctx.out, ctx.name, ctx.common.ironic_flavor,
                                            ctx.common.ironic_branch)
            notes.append(str(written[-1]))
    ctx.log.say(f"tinyipa: done in {ctx.log.elapsed():.0f}s: {ctx.out}/{ctx.name}.kernel, "
                f"{ctx.out}/{ctx.name}.initramfs")


# -- packages ---------------------------------------------------------------------


def fetch_packages(ctx: Context) -> None:
    with ctx.log.step("packages") as notes:
        apt = Apt(ctx.cache, ctx.release, ctx.log, arch=ctx.cpu.debian)
        updated = apt.update(max_age=0 if ctx.refresh else 24 * 3600)
        names = list(dict.fromkeys(list(ctx.config["packages"]) + programs.packages("tinyipa")
                                   + ctx.extra_packages))
        # dropbear: SSH for the rescue user (always) and debug keys (--ssh-key)
        names.append("dropbear-bin")
        ctx.packages = apt.resolve(names)
        apt.download(ctx.packages)
        notes.append(f"{len(ctx.packages)} .debs for {ctx.release} {ctx.cpu.debian}"
                     + (" (lists refreshed)" if updated else ""))


def unpack_packages(ctx: Context) -> None:
    with ctx.log.step("unpack") as notes:
        unpacked = {p: debs.extract(ctx.cache / "debs" / p.filename,
                                    ctx.cache / "unpacked", ctx.log) for p in ctx.packages}
        tree = PackageTree(unpacked)
        ctx.root = Root(ctx.workdir / "root", tree, ctx.log,
                        stubs=ctx.config.get("stubs", {}), triplet=ctx.cpu.triplet)
        found = sorted(m.group(1) for p, (real, _pkg) in tree.files.items()
                       if (m := re.fullmatch(r"/usr/bin/python(3\.\d+)", p))
                       and not real.is_symlink())
        if not found:
            raise RuntimeError("no /usr/bin/python3.N in the packages")
        ctx.python_version = found[-1]
        notes.append(f"{len(tree.files)} files from {len(unpacked)} packages, "
                     f"Python {ctx.python_version}")


# -- the base system ----------------------------------------------------------------


GCONV = "/usr/lib/{triplet}/gconv"
GCONV_MODULES = """\
# only the code page mtools converts FAT names with by default (850)
alias\tCP850//\tIBM850//
alias\t850//\tIBM850//
module\tIBM850//\tINTERNAL\tIBM850\t1
module\tINTERNAL\tIBM850//\tIBM850\t1
"""


def install_base(ctx: Context) -> None:
    root = ctx.root
    with ctx.log.step("base") as notes:
        binaries = list(dict.fromkeys(list(ctx.config["binaries"]) + programs.programs("tinyipa")))
        for name in binaries:
            root.add_binary(name)
        for extra in ctx.extra_packages:
            add_package_files(ctx, extra)
        # udev: the daemon, its helpers and rules (no hwdb: names only, ~10 MB)
        root.add_file("/lib/systemd/systemd-udevd")
        root.add_symlink("/usr/sbin/udevd", "/lib/systemd/systemd-udevd")
        udev_prune = tuple(ctx.config.get("udev_prune", ()))
        root.add_tree("/lib/udev", libs=True, exclude=lambda p: "/hwdb.d/" in p
                      or p.rsplit("/", 1)[1] in udev_prune)
        root.add_tree("/etc/udev", libs=False)
        # openssl CLI configuration (auto-TLS certificates are made at boot)
        root.add_file("/usr/lib/ssl/openssl.cnf")
        # mtools converts FAT short names from code page 850 through iconv: without
        # glibc's IBM850 module every mdir/mcopy fails ("Error converting to
        # codepage 850", then "Cannot initialize '::'"), so no ESP can be read
        gconv = GCONV.format(triplet=ctx.cpu.triplet)
        root.add_file(f"{gconv}/IBM850.so")
        root.write_file(f"{gconv}/gconv-modules", GCONV_MODULES)
        root.add_host_file(HERE / "init", "/init", 0o755)
        root.add_host_file(HERE / "udhcpc.script", "/usr/share/udhcpc/default.script", 0o755)
        load = list(modules.selection(arch=ctx.arch).load)
        root.write_file("/etc/tinyipa/modules-load", "\n".join(load) + "\n")
        groups = [g.split(":") for g in GROUPS.split()]
        root.write_file("/etc/group", "".join(f"{n}:x:{i}:\n" for n, i in groups))
        root.write_file("/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"
                        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")
        root.write_file("/etc/shadow", f"root:{ctx.password_hash or '*'}:19000:0:99999:7:::\n"
                        "nobody:*:19000:0:99999:7:::\n", 0o600)
        root.write_file("/etc/hosts", "127.0.0.1 localhost\n::1 localhost\n")
        root.write_file("/etc/hostname", "tinyipa\n")
        root.write_file("/etc/nsswitch.conf", "passwd: files\ngroup: files\nshadow: files\n"
                        "hosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n")
        root.write_file("/etc/os-release", 'NAME="lean-ipa tinyipa"\nID=tinyipa\n'
                        f'ID_LIKE=debian\nVERSION_CODENAME={ctx.release}\n')
        root.write_file("/etc/fstab", "")
        (root.path / "etc/ironic-python-agent.d").mkdir(parents=True, exist_ok=True)
        (root.path / "etc/ironic-python-agent").mkdir(parents=True, exist_ok=True)
        notes.append(f"{len(binaries)} programs")


def add_package_files(ctx: Context, name: str) -> None:
    """All files of one extra package, except documentation."""
    pkg = next((p for p in ctx.packages if p.name == name), None)
    if pkg is None:
        raise RuntimeError(f"extra package {name} was not fetched")
    # tinyipa has no systemd (its /init starts what runs) and no init scripts
    skip = re.compile(r"^/usr/share/(doc|man|info|locale|lintian|bug)/"
                      r"|^(/usr)?/lib/systemd/(system|user)/|^/etc/(systemd|init\.d)/")
    for vpath, (real, owner) in sorted(ctx.root.tree.files.items()):
        if owner != pkg or skip.match(vpath):
            continue
        try:
            ctx.root.add_file(vpath)
        except FileNotFoundError:
            if not real.is_symlink():
                raise
            # a link to what no package has (e.g. /dev/null): kept as the package has it
            ctx.root.add_symlink(vpath, os.readlink(real))


def install_python(ctx: Context) -> None:
    root = ctx.root
    with ctx.log.step("python") as notes:
        py = f"python{ctx.python_version}"
        root.add_binary(py)
        root.add_symlink("/usr/bin/python3", py)
        prune = [f"/usr/lib/{py}/{p.replace('{version}', ctx.python_version)}"
                 for p in ctx.config["python_prune"]]

        encodings = f"/usr/lib/{py}/encodings/"
        keep_codecs = set(ctx.config.get("python_encodings", ()))

        def exclude(vpath: str) -> bool:
            if (keep_codecs and vpath.startswith(encodings) and vpath.endswith(".py")
                    and vpath[len(encodings):-3] not in keep_codecs):
                return True
            return ("/__pycache__/" in vpath or vpath.endswith((".pyc", ".exe"))
                    or any(vpath == p or vpath.startswith(p + "/") or
                           vpath.startswith(p + ".") for p in prune))

        count = root.add_tree(f"/usr/lib/{py}", exclude=exclude, libs=True)
        notes.append(f"{count} stdlib files")


def _requires_key(ctx: Context) -> str:
    with zipfile.ZipFile(ctx.wheel) as whl:
        meta = next(n for n in whl.namelist() if n.endswith(".dist-info/METADATA"))
        requires = [line for line in whl.read(meta).decode().splitlines()
                    if line.startswith("Requires-Dist:")]
    blob = "\n".join(requires + ctx.extra_python + ctx.cpu.wheel_platforms()
                     + [ctx.python_version])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def install_agent(ctx: Context) -> None:
    """The agent wheel from this checkout plus its dependencies, offline."""
    root = ctx.root
    with ctx.log.step("agent") as notes:
        wheels = ctx.cache / "wheels" / _requires_key(ctx)
        if not (wheels / ".complete").exists():
            wheels.mkdir(parents=True, exist_ok=True)
            argv = [ctx.pip_python, "-m", "pip", "download", "-q", "--dest", str(wheels)]
            ctx.log.run(argv + target_python(ctx) + [str(ctx.wheel)] + ctx.extra_python)
            (wheels / ".complete").touch()
            notes.append("dependencies downloaded")
        site = root.dest(SITE)
        ctx.log.run([ctx.pip_python, "-m", "pip", "install", "-q", "--no-index",
                     "--find-links", str(wheels), "--target", str(site), "--no-compile",
                     "--no-warn-script-location", "--disable-pip-version-check",
                     *target_python(ctx), str(ctx.wheel)] + ctx.extra_python)
        shutil.rmtree(site / "bin", ignore_errors=True)
        for pattern in ctx.config["site_prune"]:
            for path in list(site.glob(pattern)) + list(site.glob(pattern + "-*.dist-info")):
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        for junk in site.rglob("*"):
            if junk.is_dir() and junk.name in ("tests", "__pycache__") and junk.exists():
                shutil.rmtree(junk)
        for dist in site.glob("*.dist-info"):
            meta = (dist / "METADATA").read_text(errors="replace")
            name = re.search(r"^Name: (.+)$", meta, re.M)
            version = re.search(r"^Version: (.+)$", meta, re.M)
            if name and version:
                ctx.dists[name.group(1).strip()] = version.group(1).strip()
        write_console_scripts(ctx, site)
        write_ca_bundle(ctx, site)
        notes.append(f"{len(ctx.dists)} Python distributions")


def target_python(ctx: Context) -> list[str]:
    """pip options selecting wheels for the image's Python, not the host's."""
    argv = ["--only-binary=:all:", "--python-version", ctx.python_version,
            "--implementation", "cp", "--abi", "cp" + ctx.python_version.replace(".", "")]
    for plat in ctx.cpu.wheel_platforms():
        argv += ["--platform", plat]
    return argv


def write_console_scripts(ctx: Context, site: Path) -> None:
    """/usr/bin wrappers for the console scripts of the agent wheel and --extra-python."""
    with zipfile.ZipFile(ctx.wheel) as whl:
        entry = next((n for n in whl.namelist()
                      if n.endswith(".dist-info/entry_points.txt")), None)
        texts = [whl.read(entry).decode() if entry else ""]
    wanted = {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower().replace("-", "_")
              for r in ctx.extra_python}
    for info in sorted(site.glob("*.dist-info")):
        dist = info.name.split("-", 1)[0].lower()  # name-version.dist-info
        if dist in wanted and (info / "entry_points.txt").exists():
            texts.append((info / "entry_points.txt").read_text())
    for text in texts:
        _write_scripts(ctx, text)


def _write_scripts(ctx: Context, text: str) -> None:
    section = ""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line.strip("[]")
        elif section == "console_scripts" and "=" in line:
            name, target = (s.strip() for s in line.split("=", 1))
            module, func = target.split(":")
            ctx.root.write_file(f"/usr/bin/{name}", (
                f"#!/usr/bin/python{ctx.python_version}\nimport sys\n"
                f"from {module} import {func}\n"
                f"sys.exit({func}())\n"), 0o755)


def write_ca_bundle(ctx: Context, site: Path) -> None:
    """certifi's (Mozilla) roots plus the operator's extra bundle; never the host's."""
    parts = []
    certifi = site / "certifi" / "cacert.pem"
    if certifi.exists():
        parts.append(certifi.read_text())
    if ctx.ca_bundle is not None:
        parts.append(ctx.ca_bundle.read_text())
    ctx.root.write_file("/etc/ssl/certs/ca-certificates.crt", "\n".join(parts))
    if certifi.exists():  # one copy of the roots, not two (~120 KB compressed)
        certifi.unlink()
        certifi.symlink_to("/etc/ssl/certs/ca-certificates.crt")


# -- kernel ---------------------------------------------------------------------------


def install_kernel_modules(ctx: Context) -> None:
    root = ctx.root
    with ctx.log.step("kernel") as notes:
        versions = sorted({p.split("/")[4] for p in root.tree.children("/usr/lib/modules")
                           if p.count("/") > 4})
        if len(versions) != 1:
            raise RuntimeError(f"expected one kernel in the packages, found {versions}")
        kver = ctx.kernel_version = versions[0]
        base = f"/usr/lib/modules/{kver}"
        builtin: set[str] = set()
        hit = root.tree.lookup(f"{base}/modules.builtin")
        if hit:
            builtin = {Path(line).name.split(".ko")[0].replace("-", "_")
                       for line in hit[0].read_text().split()}
        for meta in ("modules.builtin", "modules.builtin.modinfo", "modules.order"):
            if root.tree.lookup(f"{base}/{meta}"):
                root.add_file(f"{base}/{meta}", libs=False)
        index = root.module_index(kver)
        added: list[str] = []
        for name in list(modules.selection(arch=ctx.arch).names) + ctx.extra_modules:
            added += root.add_module(name, kver, index, builtin)
        order = root.dest(f"{base}/modules.order")
        if order.exists():  # the kernel's full list (~160 KB): only what is here
            present = {str(p.relative_to(root.dest(base))) for p in root.dest(base).rglob("*.ko")}
            kept = [m for m in order.read_text().splitlines() if m in present]
            order.unlink()  # a copy, not a link into the unpacked package
            order.write_text("".join(m + "\n" for m in kept))
        packed = compress_modules(ctx, root.dest(base))
        ctx.log.run(["depmod", "-b", str(root.path / "usr"), kver])
        vmlinuz = root.tree.lookup(f"/boot/vmlinuz-{kver}")
        if vmlinuz is None:
            raise RuntimeError(f"no /boot/vmlinuz-{kver} in the kernel package")
        kernel_file(vmlinuz[0], ctx.workdir / "kernel")
        notes.append(f"{kver}, {len(added)} modules ({packed / 1e6:.1f} MB as .ko.xz)")


ARM64_IMAGE_MAGIC = b"ARM\x64"   # at offset 56 of an arm64 kernel Image


def kernel_file(vmlinuz: Path, dest: Path) -> None:
    """The kernel as shipped: Debian's x86_64 bzImage as it is; its arm64
    vmlinuz is the plain Image (33 MB), gzip'd here (10 MB), as the other
    distributions ship theirs: GRUB, iPXE and QEMU's -kernel unpack it."""
    data = vmlinuz.read_bytes()
    if data[56:60] == ARM64_IMAGE_MAGIC:
        data = gzip.compress(data, compresslevel=9, mtime=0)
    dest.write_bytes(data)


def compress_modules(ctx: Context, moddir: Path) -> int:
    """xz each module: kmod unpacks only the ones it loads, and the initramfs the
    kernel unpacks at boot (slow under TCG) shrinks by ~20 MB. Cached by content.
    (Releases after bookworm ship them compressed already.) Returns their size."""
    store = ctx.cache / "modules-xz"
    store.mkdir(parents=True, exist_ok=True)
    for ko in sorted(moddir.rglob("*.ko")):
        data = ko.read_bytes()
        cached = store / (hashlib.sha256(data).hexdigest() + ".xz")
        if not cached.exists():
            cached.with_suffix(".tmp").write_bytes(
                lzma.compress(data, check=lzma.CHECK_CRC32, preset=6))
            cached.with_suffix(".tmp").rename(cached)
        target = ko.with_name(ko.name + ".xz")
        shutil.copyfile(cached, target)
        target.chmod(0o644)
        ko.unlink()
    return sum(f.stat().st_size for f in moddir.rglob("*.ko.*"))


def configure_login(ctx: Context) -> None:
    """Debugging access, off unless asked for: SSH keys (dropbear), console password."""
    root = ctx.root
    with ctx.log.step("login") as notes:
        # dropbear is always there for rescue (/init starts it after finalize_rescue);
        # at boot it only runs with --ssh-key.
        # (no dropbearkey: dropbear -R makes its host keys itself)
        root.add_binary("dropbear")
        (root.path / "etc/dropbear").mkdir(parents=True, exist_ok=True)
        if ctx.ssh_keys:
            root.write_file("/root/.ssh/authorized_keys", "\n".join(ctx.ssh_keys) + "\n", 0o600)
            (root.path / "root/.ssh").chmod(0o700)
            notes.append(f"ssh with {len(ctx.ssh_keys)} key(s)")
        if ctx.password_hash:
            notes.append("console password set")
        if not notes:
            notes.append("none (no ssh keys, no password)")


def install_busybox(ctx: Context) -> None:
    """busybox applets for every program not already present; then all libraries."""
    root = ctx.root
    with ctx.log.step("busybox") as notes:
        busybox = root.add_file("/bin/busybox")
        applets = ctx.log.run(image_command(ctx, root.dest(busybox), "--list-full"),
                              capture=True).split()
        linked = 0
        for applet in applets:
            path = debs.normalize(applet)
            name = path.rsplit("/", 1)[1]
            if any(root.exists(f"{d}/{name}") for d in ("/usr/bin", "/usr/sbin")):
                continue
            root.add_symlink(path, busybox)
            linked += 1
        root.add_all_libraries()
        if root.missing_libs:
            raise RuntimeError("shared libraries not found in the packages: "
                               + ", ".join(sorted(root.missing_libs)))
        notes.append(f"{linked} applets")


def image_command(ctx: Context, program: Path, *args: str) -> list[str]:
    """The argv running one of the image's programs on this host: itself, or
    for another architecture under qemu-user with the image root as its
    library prefix (no binfmt registration needed)."""
    if ctx.cpu.native:
        return [str(program), *args]
    if shutil.which(ctx.cpu.emulator) is None:
        raise RuntimeError(f"{ctx.cpu.emulator} (qemu-user-static) is needed to run the "
                           f"{ctx.arch} image's {program.name} here")
    return [ctx.cpu.emulator, "-L", str(ctx.root.path), str(program), *args]


def compile_python(ctx: Context) -> None:
    """Byte-compile once at build time; hash-based pycs ignore the cpio mtimes."""
    root = ctx.root
    with ctx.log.step("bytecode") as notes:
        host = "%d.%d" % sys.version_info[:2]
        if host != ctx.python_version:
            # Bytecode is version-specific; the image then compiles nothing
            # either (read-only imports are fine), it just starts slower.
            notes.append(f"skipped: host Python {host}, image {ctx.python_version}")
            return
        stdlib = root.dest(f"/usr/lib/python{ctx.python_version}")
        sourceless = bool(ctx.config["stdlib_sourceless"])
        common = [sys.executable, "-m", "compileall", "-q", "-j", "0",
                  "--invalidation-mode", "unchecked-hash", "-s", str(root.path), "-p", "/"]
        ctx.log.run(common + (["-b"] if sourceless else []) + [str(stdlib)])
        site = root.dest(SITE)
        site_sourceless = bool(ctx.config.get("site_sourceless", False))
        keep = [site / name for name in ctx.config.get("site_keep_sources", [])]
        if any(d.exists() for d in keep):
            ctx.log.run(common + [str(d) for d in keep if d.exists()])
        others = [str(d) for d in site.iterdir() if d not in keep]
        ctx.log.run(common + (["-b"] if site_sourceless else []) + others)
        doomed = list(stdlib.rglob("*.py")) if sourceless else []
        if site_sourceless:
            doomed += [py for py in site.rglob("*.py")
                       if not any(k in py.parents for k in keep)]
        for py in doomed:
            if py.with_suffix(".pyc").exists():
                py.unlink()
        notes.append(f"{sum(1 for _ in root.path.rglob('*.pyc'))} modules")


# -- outputs ----------------------------------------------------------------------------


COMPRESSORS = {
    # Level 22 with a 64 MiB window (not 128: the kernel allocates the window
    # while unpacking, and 256 MiB guests must boot); ~1.5% smaller than -19,
    # unpacks as fast.
    "zstd": ["zstd", "-q", "--ultra", "-22", "--zstd=wlog=26", "-T0", "-c"],
    # crc32: the only check the kernel's xz decoder verifies. A 16 MiB
    # dictionary bounds what the kernel allocates while unpacking.
    "xz": ["xz", "-c", "-T0", "--check=crc32", "--lzma2=preset=9,dict=16MiB"],
    "gzip": ["gzip", "-c", "-9", "-n"],
}


def compressor(kind: str, part: str, cpu: str = arch.DEFAULT) -> list[str]:
    """The command compressing one cpio part. The base part of an x86_64 image
    is mostly x86 machine code: xz's BCJ filter (which the kernel's decoder has,
    as CONFIG_XZ_DEC_X86) shrinks it by another ~5%. (bookworm's kernel has no
    ARM64 BCJ decoder: arm64 images go without.)"""
    argv = list(COMPRESSORS[kind])
    if kind == "xz" and part == "base" and cpu == "x86_64":
        argv.insert(argv.index("--lzma2=preset=9,dict=16MiB"), "--x86")
    return argv


def segment_of(rel: str, agent_paths: tuple[str, ...],
               generated: frozenset[str] = frozenset()) -> str:
    """Which archive a path goes into; each is compressed (and cached) on its own.

    What changes with every checkout (the agent, its console scripts, /init,
    /etc) goes last and is small, so a rebuild after editing the agent
    recompresses only that part. Everything else is one archive: compressed
    together, the programs, modules and Python share one window (~0.2 MB
    smaller than four parts).
    """
    if (rel.startswith(agent_paths) or rel in generated or rel == "init"
            or rel.startswith("etc/")):
        return "local"
    return "base"


def make_initramfs(ctx: Context) -> None:
    with ctx.log.step("initramfs") as notes:
        if ctx.compression not in COMPRESSORS:
            raise RuntimeError(f"unknown compression {ctx.compression}; "
                               f"use one of {', '.join(COMPRESSORS)}")
        mtime = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
        site = SITE.lstrip("/") + "/"
        agent_paths = ("usr/bin/ironic-python-agent", site + "ironic_python_agent",
                       site + ctx.wheel.name.split("-")[0] + "-")
        order = ["base", "local"]
        groups: dict[str, list[cpio.Entry]] = {name: [] for name in order}
        groups["base"] += ctx.root.nodes
        generated = frozenset(ctx.root.generated)
        for rel in cpio.walk(ctx.root.path):
            groups[segment_of(rel, agent_paths, generated)].append(
                cpio.entry_for(ctx.root.path, rel))
        store = ctx.cache / "compressed"
        store.mkdir(parents=True, exist_ok=True)
        tmp = ctx.out / f"{ctx.name}.initramfs.tmp"
        reused, count = [], 0
        with open(tmp, "wb") as out:
            for number, name in enumerate(order):
                # Inode numbers only pair hard links (there are none); a fixed
                # range per archive keeps each one independent of the others.
                data = cpio.archive(groups[name], mtime=mtime, first_ino=(number << 20) + 1)
                count += len(groups[name])
                argv = compressor(ctx.compression, name, ctx.arch)
                key = hashlib.sha256(data + " ".join(argv).encode()).hexdigest()
                blob = store / f"{key}.{ctx.compression}"
                if blob.exists() and not ctx.rebuild:
                    reused.append(name)
                    blob.touch()  # recently used: kept by the clean-up below
                else:
                    packed = bytes(run(argv, input=data, binary=True))
                    blob.with_suffix(".tmp").write_bytes(packed)
                    blob.with_suffix(".tmp").rename(blob)
                packed = blob.read_bytes()
                # Concatenated zstd frames / xz streams / gzip members form one
                # valid stream, which the kernel and the CLI tools read whole.
                out.write(packed)
        tmp.rename(ctx.out / f"{ctx.name}.initramfs")
        for stale in store.iterdir():  # parts no build has used for two weeks
            if time.time() - stale.stat().st_mtime > 14 * 86400:
                stale.unlink()
        shutil.copyfile(ctx.workdir / "kernel", ctx.out / f"{ctx.name}.kernel")
        size = (ctx.out / f"{ctx.name}.initramfs").stat().st_size
        ksize = (ctx.out / f"{ctx.name}.kernel").stat().st_size
        notes.append(f"{count} entries, initramfs {size / 1e6:.1f} MB + kernel "
                     f"{ksize / 1e6:.1f} MB ({ctx.compression}"
                     + (f"; reused {'/'.join(reused)}" if reused else "") + ")")


sha256 = outputs.sha256


def check_signature(ctx: Context) -> None:
    """Whether the kernel written is Debian's signed one (buildlib/signature.py)."""
    with ctx.log.step("kernel signature") as notes:
        verdict = signature.check_kernel(ctx.out / f"{ctx.name}.kernel", ctx.cache, ctx.log)
        ctx.secure_boot = verdict.manifest_line()
        notes.append(ctx.secure_boot.removeprefix("secure_boot "))


def write_manifest(ctx: Context) -> None:
    """A sorted, line-based manifest, so two builds diff cleanly."""
    with ctx.log.step("manifest") as notes:
        lines = [f"kernel {ctx.kernel_version}"]
        lines += outputs.common_inputs("tinyipa", ctx.name, ctx.release, ctx.arch)
        lines += [f"input compression {ctx.compression}",
                  f"input wheel {ctx.wheel.name} sha256:{sha256(ctx.wheel)}",
                  f"input tinyipa.toml sha256:{sha256(HERE / 'tinyipa.toml')}",
                  f"input image-programs.toml sha256:{sha256(programs.LIST)}",
                  f"input kernel-modules.toml sha256:{sha256(modules.LIST)}",
                  f"input init sha256:{sha256(HERE / 'init')}"]
        lines += [f"input extra-module {m}" for m in ctx.extra_modules]
        lines += [f"input extra-package {p}" for p in ctx.extra_packages]
        lines += [f"input extra-python {p}" for p in ctx.extra_python]
        lines += [f"input option {o}" for o in ctx.options]
        lines.append(f"input ssh-keys {len(ctx.ssh_keys)}")
        lines.append(f"input password {'set' if ctx.password_hash else 'none'}")
        if ctx.ca_bundle:
            lines.append(f"input ca-bundle sha256:{sha256(ctx.ca_bundle)}")
        lines += sorted(f"deb {p.name} {p.version}" for p in ctx.root.used)
        lines += sorted(f"python {n} {v}" for n, v in ctx.dists.items())
        lines += stub.manifest_lines(ctx)
        if ctx.secure_boot:
            lines.append(ctx.secure_boot)
        outputs.publish(ctx.out, ctx.name, lines)
        notes.append(f"{len(ctx.root.used)} Debian packages, {len(ctx.dists)} Python dists")
