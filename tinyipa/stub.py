# SPDX-License-Identifier: Apache-2.0
"""Stub shared libraries: a few big libraries serve only features a deploy
ramdisk never uses (ipmitool's ``-I free``, qemu-img's TLS, nvme-cli's MCTP
scan over D-Bus), yet the programs are linked BIND_NOW, so the loader wants
every symbol they import at start-up.

For each soname in ``[stubs]`` of tinyipa.toml the image gets a small library
generated here instead of the real one: it defines exactly the symbols the
image's ELF objects import from the real library (same names, versions, kinds
and object sizes); each function writes one line naming itself to stderr and
aborts, except the ones listed as ``succeed`` (library initialisers the
program calls at start-up), which return 0. The real library's own
dependencies then stay out of the image.

Pure functions (parsing ``readelf`` output, writing C and the version script)
are separate from :func:`install`, the build stage that runs them.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from buildlib.log import BuildError, run
from tinyipa import elf

if TYPE_CHECKING:
    from tinyipa.build import Context

LIBDIR = "/usr/lib/{triplet}"
# Functions the generated C calls itself; a stub must not define them.
RESERVED = frozenset({"write", "abort"})
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ROW = re.compile(r"^\s*\d+:\s+[0-9a-fA-F]+\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)"
                  r"(?:\s+(\S+))?")


@dataclass(frozen=True)
class Symbol:
    """One ``.dynsym`` row: ``kind`` is FUNC, OBJECT, TLS, IFUNC or NOTYPE."""

    name: str
    version: str | None
    kind: str
    size: int
    defined: bool
    default: bool = True   # ``name@@VER`` (or unversioned), not a hidden ``name@VER``
    weak: bool = False

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}" if self.version else self.name


@dataclass(frozen=True)
class Spec:
    """One ``[stubs."<soname>"]`` entry of tinyipa.toml."""

    soname: str
    reason: str
    succeed: tuple[str, ...] = ()


def specs(config: Mapping[str, Any]) -> dict[str, Spec]:
    """The stub table of tinyipa.toml, checked."""
    table: dict[str, Spec] = {}
    for soname, entry in dict(config.get("stubs", {})).items():
        reason = str(entry.get("reason", "")).strip()
        if not reason:
            raise ValueError(f"[stubs.\"{soname}\"] needs a reason (the feature that is absent)")
        unknown = set(entry) - {"reason", "succeed"}
        if unknown:
            raise ValueError(f"[stubs.\"{soname}\"]: unknown keys {sorted(unknown)}")
        table[soname] = Spec(soname, reason, tuple(entry.get("succeed", ())))
    return table


# -- readelf output ------------------------------------------------------------------


def parse_row(line: str) -> Symbol | None:
    """One symbol row of ``readelf --dyn-syms -W``; None for headers, the null
    symbol, local symbols and version definitions (``ABS``)."""
    m = _ROW.match(line)
    if m is None:
        return None
    size_text, kind, bind, _vis, ndx, name = m.groups()[:6]
    if m.group(7) is not None and not m.group(7).startswith("("):
        return None  # an unexpected extra column: not a row we understand
    if bind == "LOCAL" or ndx == "ABS" or not name:
        return None
    size = int(size_text, 16) if size_text.startswith("0x") else int(size_text)
    default = True
    version: str | None = None
    if "@@" in name:
        name, version = name.split("@@", 1)
    elif "@" in name:
        name, version = name.split("@", 1)
        default = ndx == "UND"  # a defined name@VER is a hidden (old) version
    return Symbol(name, version, kind, size, defined=ndx != "UND", default=default,
                  weak=bind == "WEAK")


def parse_dynsyms(text: str) -> dict[str, list[Symbol]]:
    """``readelf --dyn-syms -W FILE...`` output as {file: symbols}.

    With one file readelf prints no ``File:`` header; its symbols are under "".
    """
    files: dict[str, list[Symbol]] = {}
    current = files.setdefault("", [])
    for line in text.splitlines():
        if line.startswith("File: "):
            current = files.setdefault(line[len("File: "):].strip(), [])
            continue
        sym = parse_row(line)
        if sym is not None:
            current.append(sym)
    if not files[""]:
        del files[""]
    return files


def stub_symbols(imports: Iterable[Symbol], library: Iterable[Symbol]) -> list[Symbol]:
    """What the stub must define: every symbol imported (by name and, when the
    import names one, version) that the real library defines, with the kind,
    size and version of the library's definition. Sorted by name."""
    defined: dict[tuple[str, str | None], Symbol] = {}
    defaults: dict[str, Symbol] = {}
    for sym in library:
        if sym.defined:
            defined[(sym.name, sym.version)] = sym
            if sym.default:
                defaults[sym.name] = sym
    wanted: dict[tuple[str, str | None], Symbol] = {}
    for imp in imports:
        if imp.defined:
            continue
        hit = defined.get((imp.name, imp.version)) if imp.version else defaults.get(imp.name)
        if hit is None:
            continue
        if not hit.default:
            raise ValueError(f"{imp.ref} is an old (non-default) version in the real library; "
                             "stubs only define default versions")
        wanted[(hit.name, hit.version)] = hit
    return sorted(wanted.values(), key=lambda s: (s.name, s.version or ""))


# -- generated sources ----------------------------------------------------------------


def c_string(text: str) -> str:
    """*text* as a C string literal (ASCII; anything else escaped)."""
    out = []
    for byte in text.encode():
        ch = chr(byte)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 0x20 <= byte < 0x7F:
            out.append(ch)
        else:
            out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def message(spec: Spec, function: str) -> str:
    return (f"tinyipa: {spec.soname} is a stub in this image ({spec.reason}); "
            f"{function} was called\n")


def c_source(spec: Spec, symbols: Iterable[Symbol]) -> str:
    """The stub library's C source."""
    lines = [f"/* {spec.soname}: a stub generated by the tinyipa builder (tinyipa/stub.py).",
             f"   {spec.reason}. */",
             "extern long write(int, const void *, unsigned long);",
             "extern void abort(void) __attribute__((noreturn));",
             "",
             "__attribute__((noreturn, cold)) static void tinyipa_stub_called("
             "const char *line, unsigned long length)",
             "{",
             "    (void)!write(2, line, length);",
             "    abort();",
             "}",
             ""]
    for sym in symbols:
        if not _IDENT.fullmatch(sym.name) or sym.name in RESERVED:
            raise ValueError(f"cannot stub the symbol {sym.name!r} of {spec.soname}")
        if sym.kind in ("OBJECT", "TLS"):
            tls = "__thread " if sym.kind == "TLS" else ""
            lines.append(f"{tls}char {sym.name}[{sym.size}] __attribute__((aligned(16)));")
        elif sym.name in spec.succeed:
            lines.append(f"long {sym.name}(void) {{ return 0; }}")
        else:
            text = message(spec, sym.name)
            lines += [f"void {sym.name}(void)",
                      "{",
                      f"    static const char line[] = {c_string(text)};",
                      "    tinyipa_stub_called(line, sizeof line - 1);",
                      "}"]
    return "\n".join(lines) + "\n"


def version_script(symbols: Iterable[Symbol]) -> str:
    """A linker version script exporting *symbols* under their versions."""
    nodes: dict[str | None, list[str]] = {}
    for sym in symbols:
        nodes.setdefault(sym.version, []).append(sym.name)
    if None in nodes and len(nodes) > 1:
        raise ValueError("the real library mixes versioned and unversioned symbols: "
                         + ", ".join(sorted(nodes[None])[:5]))
    if not nodes:
        return "{\n  local: *;\n};\n"
    out = []
    for i, (version, names) in enumerate(sorted(nodes.items(), key=lambda kv: kv[0] or "")):
        body = "".join(f"    {n};\n" for n in sorted(names))
        local = "  local: *;\n" if i == 0 else ""
        out.append(f"{version or ''}{' ' if version else ''}{{\n  global:\n{body}{local}}};\n")
    return "".join(out)


def gcc_argv(soname: str, workdir: str = ".") -> list[str]:
    """gcc options for one stub, compiled in its own directory *workdir*
    (``stub.c``, ``stub.map`` -> ``stub.so``): no paths, dates or debug info in
    the output, so the same inputs give the same bytes."""
    return ["gcc", "-shared", "-fPIC", "-O2", "-fno-common", "-nostdlib",
            f"-ffile-prefix-map={workdir}=.", "-Wl,--hash-style=gnu", "-Wl,--build-id=sha1",
            "-Wl,-soname," + soname, "-Wl,--version-script=stub.map", "-s",
            "-o", "stub.so", "stub.c", "-lc"]


def compile_stub(source: str, script: str, soname: str, cache: Path) -> bytes:
    """The compiled stub, cached by its inputs and the compiler's version."""
    argv = gcc_argv(soname)
    compiler = str(run(["gcc", "--version"])).splitlines()[0]
    key = hashlib.sha256("\0".join([source, script, " ".join(argv), compiler]).encode())
    cached = cache / f"{key.hexdigest()[:32]}.so"
    if cached.exists():
        return cached.read_bytes()
    with tempfile.TemporaryDirectory(prefix="tinyipa-stub-") as tmp:
        work = Path(tmp)
        (work / "stub.c").write_text(source)
        (work / "stub.map").write_text(script)
        try:
            run(gcc_argv(soname, tmp), cwd=work)
        except BuildError as exc:
            raise BuildError(f"gcc failed on the {soname} stub: {exc}") from None
        data = (work / "stub.so").read_bytes()
    cache.mkdir(parents=True, exist_ok=True)
    cached.with_suffix(".tmp").write_bytes(data)
    cached.with_suffix(".tmp").rename(cached)
    return data


# -- the build stage ------------------------------------------------------------------


def readelf(paths: list[Path]) -> dict[str, list[Symbol]]:
    if not paths:
        return {}
    found = parse_dynsyms(str(run(["readelf", "--dyn-syms", "-W", *paths])))
    if len(paths) == 1 and "" in found:
        found = {str(paths[0]): found.pop("")}
    return found


def elf_files(root: Path) -> list[Path]:
    files = []
    for dirpath, _dirs, names in os.walk(root):
        for name in sorted(names):
            path = Path(dirpath) / name
            if not path.is_symlink() and elf.is_elf(path):
                files.append(path)
    return sorted(files)


def install(ctx: Context) -> None:
    """Put a stub in the image for every configured library something needs."""
    root = ctx.root
    with ctx.log.step("stubs") as notes:
        table = specs(ctx.config)
        unused = sorted(set(table) - set(root.stubbed))
        if unused:
            ctx.log.info(f"stubs nothing needs: {', '.join(unused)}")
        needed = sorted(set(table) & set(root.stubbed))
        imports = ([s for syms in readelf(elf_files(root.path)).values() for s in syms]
                   if needed else [])
        for soname in needed:
            spec = table[soname]
            vpath = f"{LIBDIR.format(triplet=ctx.cpu.triplet)}/{soname}"
            if root.exists(vpath):
                raise RuntimeError(f"{soname} is in the image already (installed whole); "
                                   "it cannot also be a stub")
            real = real_library(ctx, soname)
            symbols = stub_symbols(imports, readelf([real]).get(str(real), []))
            data = compile_stub(c_source(spec, symbols), version_script(symbols), soname,
                                ctx.cache / "stubs")
            dest = root.dest(vpath)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
            dest.chmod(0o644)
            root.add_libraries(dest)
            users = ", ".join(sorted(root.stubbed[soname]))
            ctx.log.info(f"stub {soname}: {len(symbols)} symbols for {users}")
            notes.append(f"{soname} ({len(symbols)} symbols)")
        if not notes:
            notes.append("none needed" if table else
                         f"none for {ctx.arch} (the real libraries are in the image)")


def real_library(ctx: Context, soname: str) -> Path:
    """The packaged library a stub replaces (its symbols are read, never copied)."""
    tree = ctx.root.tree
    for d in (LIBDIR.format(triplet=ctx.cpu.triplet), "/usr/lib", "/usr/lib64"):
        final = tree.resolve(f"{d}/{soname}")
        hit = tree.lookup(final) if final else None
        if hit is not None:
            return hit[0]
    raise FileNotFoundError(f"no package provides {soname}, which a stub replaces")


def manifest_lines(ctx: Context) -> list[str]:
    """``stub <soname> <reason>`` for each stub in the image."""
    table = specs(ctx.config)
    return [f"stub {soname} {table[soname].reason}"
            for soname in sorted(set(table) & set(ctx.root.stubbed))]
