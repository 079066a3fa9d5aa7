# SPDX-License-Identifier: Apache-2.0
"""Our diskimage-builder elements follow DIB's conventions (dib-lint, shellcheck).

dib-lint is diskimage-builder's own checker (script headers, executable bits,
indentation, sudo use, YAML, flake8 on Python hooks); it expects to run in a
git checkout laid out like diskimage-builder's, so the elements are copied
into one. The login helper and the element scripts also go through small
checks of our own: README.rst per element, DIB_* defaults in environment.d.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[2]
ELEMENTS = TOP / "elements"
ALL = sorted(p for p in ELEMENTS.iterdir() if p.is_dir())
PHASES = {"root.d", "extra-data.d", "pre-install.d", "install.d", "post-install.d",
          "post-root.d", "block-device.d", "pre-finalise.d", "finalise.d", "cleanup.d"}


def hooks() -> list[Path]:
    return sorted(s for e in ALL for phase in PHASES if (e / phase).is_dir()
                  for s in (e / phase).iterdir())


def test_dib_lint(tmp_path: Path) -> None:
    dib_lint = shutil.which("dib-lint", path=str(Path(sys.executable).parent))
    assert dib_lint, "dib-lint (diskimage-builder) missing from the test venv"
    tree = tmp_path / "diskimage_builder"
    (tree / "lib").mkdir(parents=True)
    shutil.copytree(ELEMENTS, tree / "elements", symlinks=True)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run(git + ["init", "-q", "."], cwd=tmp_path, check=True)
    subprocess.run(git + ["add", "-A"], cwd=tmp_path, check=True)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.run([dib_lint], cwd=tmp_path, env=env, capture_output=True, text=True)
    errors = [line for line in proc.stdout.splitlines() if "ERROR" in line or "E501" in line]
    assert "PASS" in proc.stdout and not errors, proc.stdout[-3000:] + proc.stderr[-2000:]


@pytest.mark.parametrize("hook", hooks(),
                         ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}/{p.name}")
def test_hook_passes_shellcheck(hook: Path) -> None:
    proc = subprocess.run(["shellcheck", "-s", "bash", str(hook)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


@pytest.mark.parametrize("element", ALL, ids=lambda p: p.name)
def test_element_layout(element: Path) -> None:
    assert (element / "README.rst").is_file()
    for script in (s for phase in PHASES if (element / phase).is_dir()
                   for s in (element / phase).iterdir()):
        assert script.name[:2].isdigit() and script.name[2] == "-", script
        assert os.access(script, os.X_OK), f"{script} is not executable"
    readme = (element / "README.rst").read_text()
    for env in sorted((element / "environment.d").glob("*")):
        assert env.name.endswith(".bash") and not os.access(env, os.X_OK), env
        for line in env.read_text().splitlines():
            if line.startswith("export DIB_") and "=${" in line:
                name = line.split("=")[0].removeprefix("export ")
                assert name in readme, f"{name} is not documented in {element.name}/README.rst"


def test_login_params_parse_the_kernel_command_line(tmp_path: Path) -> None:
    """sshkey= (several) and rootpwd= from the kernel command line, quotes and all."""
    src = ELEMENTS / "lean-ipa-login/static/usr/local/sbin/lean-ipa-login"
    ns: dict[str, object] = {"__name__": "lean_ipa_login"}
    exec(compile(src.read_text(), str(src), "exec"), ns)
    login_params = ns["login_params"]
    keys, pwhash = login_params(  # type: ignore[operator]
        'console=ttyS0 sshkey="ssh-ed25519 AAAAC3 me@host" rootpwd="$6$salt$hash" '
        'sshkey="ssh-rsa AAAAB3 you@there" ipa-api-url=http://10.0.2.2:6385\n')
    assert keys == ["ssh-ed25519 AAAAC3 me@host", "ssh-rsa AAAAB3 you@there"]
    assert pwhash == "$6$salt$hash"
    assert login_params('sshkey="unbalanced') == (['"unbalanced'], None)  # type: ignore[operator]
