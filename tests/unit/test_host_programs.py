# SPDX-License-Identifier: Apache-2.0
"""Every program the builders and the tests run is in buildlib/host-programs.toml,
with its Debian package, so ./build.sh installs it on a fresh machine.

Programs are found by reading the code: Python calls that run an argv literal (or a
variable assigned one) or look a program up with shutil.which, and the commands of
the shell scripts. A program missing from the list fails here, naming the file.
"""

from __future__ import annotations

import ast
import re
import sys
from collections import defaultdict
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(TOP))

from buildlib import host  # noqa: E402

PYTHON_TREES = ("tinyipa", "coreos", "iso", "buildlib", "dib", "tests")
SHELL_SCRIPTS = ("build.sh", "tinyipa/build-tinyipa", "coreos/build-coreos", "dib/build-dib",
                 ".ci/run")
RUNNERS = {"run", "Popen", "check_output", "check_call", "call", "spawn"}
SHELL_WORDS = set("""if then else elif fi for while until do done case esac in function return
exit local export set shift echo printf read cd exec eval trap wait true false test [ [[ ]] ]]
: . source command type unset declare readonly break continue umask pwd time mapfile""".split())


def _programs_in(node: ast.AST, scope: dict[str, list[ast.AST]]) -> list[str]:
    """The program an argv expression starts with, when it is written in the code."""
    if isinstance(node, (ast.List, ast.Tuple)) and node.elts:
        head = node.elts[0]
        if isinstance(head, ast.Constant) and isinstance(head.value, str):
            return [head.value]
        if isinstance(head, ast.BoolOp):  # run.which("x") or "x"
            return [v.value for v in head.values if isinstance(v, ast.Constant)]
        return []
    if isinstance(node, ast.BoolOp):
        return [p for v in node.values for p in _programs_in(v, scope)]
    if isinstance(node, ast.BinOp):
        return _programs_in(node.left, scope)
    if isinstance(node, ast.Name):
        return [p for v in scope.get(node.id, []) for p in _programs_in(v, scope)]
    return []


def python_programs(source: str) -> dict[str, int]:
    """program -> first line that runs it, in one Python file."""
    tree = ast.parse(source)
    found: dict[str, int] = {}
    for fn in [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.Module))]:
        scope: dict[str, list[ast.AST]] = defaultdict(list)
        for n in ast.walk(fn):
            if isinstance(n, ast.Assign):
                for t in n.targets:
                    if isinstance(t, ast.Name):
                        scope[t.id].append(n.value)
            elif isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name) and n.value:
                scope[n.target.id].append(n.value)
            elif (isinstance(n, ast.For) and isinstance(n.target, ast.Name)
                  and isinstance(n.iter, (ast.Tuple, ast.List))):
                scope[n.target.id] += n.iter.elts
        for n in ast.walk(fn):
            if not isinstance(n, ast.Call) or not n.args:
                continue
            name = n.func.attr if isinstance(n.func, ast.Attribute) else getattr(n.func, "id", "")
            progs: list[str] = []
            if name in RUNNERS:
                progs = _programs_in(n.args[0], scope)
            elif name == "which" and isinstance(n.args[0], ast.Constant):
                progs = [n.args[0].value]
            for prog in progs:
                if prog and not prog.startswith("-") and "/" not in prog:
                    found.setdefault(prog, n.lineno)
    return found


def shell_programs(text: str) -> set[str]:
    """The commands a bash script runs (first words of its simple commands)."""
    funcs = set(re.findall(r"^\s*([A-Za-z_][\w-]*)\s*\(\)\s*\{", text, re.M))
    text = re.sub(r"\\\n", " ", text)
    text = "\n".join("" if line.lstrip().startswith("#") else re.sub(r"\s#[^'\"]*$", "", line)
                     for line in text.splitlines())
    text = re.sub(r"'[^']*'", "''", text)
    text = re.sub(r'"(?:[^"\\]|\\.)*"',
                  lambda m: "".join(" ; " + c for c in re.findall(r"\$\(([^()]*)", m.group(0))) or '""',
                  text)
    text = re.sub(r"\$\{[^{}]*\}", "$V", text)
    found: set[str] = set()
    for line in text.splitlines():
        line = re.sub(r"^[\w|*.-]+\)", "", line.strip())  # a case pattern
        for part in re.split(r"\|\||&&|[|;]|\$\(|`|\bthen\b|\bdo\b|\belse\b|^\(|\{|\}", line):
            words = part.split()
            while words and (words[0] in ("!", "(", "exec", "env", "time", "if", "while", "elif")
                             or re.match(r"^[A-Za-z_]\w*=", words[0])):
                words = words[1:]
            if not words or words[0] == "command":
                continue
            word = words[0].strip('"')
            if (word in SHELL_WORDS or word in funcs or "$" in word or "/" in word
                    or not re.fullmatch(r"[a-z][\w.+-]*", word)):
                continue
            found.add(word)
    return found


def runs() -> dict[str, list[str]]:
    """program -> where it is run (file:line), over the builders and the tests."""
    where: dict[str, list[str]] = defaultdict(list)
    for tree in PYTHON_TREES:
        for path in sorted((TOP / tree).rglob("*.py")):
            for prog, line in python_programs(path.read_text()).items():
                where[prog].append(f"{path.relative_to(TOP)}:{line}")
    for script in SHELL_SCRIPTS:
        path = TOP / script
        if path.exists():
            for prog in shell_programs(path.read_text()):
                where[prog].append(script)
    return where


def listed() -> set[str]:
    table = host.load()
    return {prog for entry in table.values()
            for key in ("programs", "venv", "engines") for prog in entry.get(key, {})}


def test_every_program_run_is_listed_with_its_package() -> None:
    # tests/fakebin replays captured output of tools that need hardware: not host programs
    known = listed() | {p.name for p in (TOP / "tests/fakebin").iterdir()}
    unlisted = {prog: where for prog, where in runs().items() if prog not in known}
    assert not unlisted, ("run but not in buildlib/host-programs.toml: "
                          + "; ".join(f"{p} ({', '.join(w[:3])})" for p, w in sorted(unlisted.items())))


def test_the_scan_sees_programs_in_python_and_shell() -> None:
    source = ("import subprocess, shutil\n"
              "def f(x):\n"
              "    argv = ['mkfs.ext4', '-F', x]\n"
              "    subprocess.run(argv)\n"
              "    for cmd in (['partprobe', x], ['udevadm', 'settle']):\n"
              "        log.run(cmd)\n"
              "    shutil.which('xorriso')\n"
              "    run([which('dmidecode') or 'dmidecode'])\n")
    assert set(python_programs(source)) == {"mkfs.ext4", "partprobe", "udevadm", "xorriso",
                                            "dmidecode"}
    script = ('f() { :; }\nf && grep -q x "$(sha256sum a | cut -c1-3)" # sort\n'
              'case "$1" in\n    iso|dib) mkdir -p d ;;\nesac\nV=1 zstd -q \\\n  x\n')
    assert shell_programs(script) == {"grep", "sha256sum", "cut", "mkdir", "zstd"}


@pytest.mark.parametrize("target", sorted(host.load()))
def test_every_target_resolves(target: str) -> None:
    need = host.needs([target])
    assert all(need.programs.values()) and all(isinstance(p, str) for p in need.packages)


def test_unknown_target_is_named() -> None:
    with pytest.raises(host.HostError, match="unknown target 'nope'"):
        host.needs(["nope"])


def test_build_sh_targets_use_the_list() -> None:
    text = (TOP / "build.sh").read_text()
    for target in re.findall(r"^\s+need_host (\w+)", text, re.M):
        host.needs([target])
    # One installer (host.py); build.sh itself installs only the python3 it runs on.
    installs = re.findall(r"apt-get -o \S+ install [^\n]*\n\s*([^\n]*)", text)
    assert installs == ["--no-install-recommends python3 >&2"] and "need_apt" not in text


def test_iso_tool_names_the_packages_the_list_installs() -> None:
    sys.path.insert(0, str(TOP / "iso"))
    from isoimage import hosttools

    need = host.needs(["iso"])
    for name, item in hosttools.PROGRAMS.items():
        assert need.programs.get(name) == item.package, name
    assert {item.package for item in hosttools.FILES.values()} <= need.packages
