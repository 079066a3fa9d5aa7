# SPDX-License-Identifier: Apache-2.0
"""rescue.finalize_rescue sets the rescue account's password in the image's /etc.

Runs against a root directory of the test's own (never the host's /etc) and
checks the written shadow entry with crypt(3) (openssl hashes the password).
"""

from __future__ import annotations

import crypt  # noqa: DEP - deprecated in 3.11 but present; crypt(3) is what logins use
from pathlib import Path

import pytest

from ironic_python_agent import errors
from ironic_python_agent.extensions.rescue import RescueExtension

BASE_PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/usr/sbin/nologin\n"
BASE_SHADOW = "root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n"


def image_root(tmp_path: Path, sudo: bool) -> Path:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text(BASE_PASSWD)
    (root / "etc/shadow").write_text(BASE_SHADOW)
    (root / "etc/group").write_text("root:x:0:\n")
    if sudo:
        (root / "usr/bin").mkdir(parents=True)
        (root / "usr/bin/sudo").write_text("")
    return root


def extension(tmp_path: Path, root: Path) -> RescueExtension:
    ext = RescueExtension()
    ext.root = root
    ext.password_file = str(tmp_path / "ipa-rescue-config" / "ipa-rescue-password")
    ext.rescued_marker = str(tmp_path / ".rescued")
    return ext


def shadow_hash(root: Path) -> str:
    line = next(l for l in (root / "etc/shadow").read_text().splitlines()
                if l.startswith("rescue:"))
    return line.split(":")[1]


@pytest.mark.parametrize("sudo", [False, True])
def test_finalize_rescue_sets_a_password_that_logs_in(tmp_path: Path, sudo: bool) -> None:
    root = image_root(tmp_path, sudo)
    ext = extension(tmp_path, root)
    ext.finalize_rescue(rescue_password="c0rrect horse")
    hashed = shadow_hash(root)
    assert hashed.startswith("$5$") and crypt.crypt("c0rrect horse", hashed) == hashed
    assert crypt.crypt("wrong", hashed) != hashed
    passwd = (root / "etc/passwd").read_text()
    assert passwd.startswith(BASE_PASSWD)  # other accounts untouched
    rescue = next(l for l in passwd.splitlines() if l.startswith("rescue:")).split(":")
    if sudo:
        assert rescue[2] != "0" and rescue[5] == "/home/rescue"
        assert (root / "etc/sudoers.d/rescue").read_text() == \
            "rescue ALL=(ALL) NOPASSWD: ALL\n"
        assert (root / "etc/sudoers.d/rescue").stat().st_mode & 0o777 == 0o440
    else:
        assert rescue[2:4] == ["0", "0"]
    assert (root / "etc/shadow").stat().st_mode & 0o777 == 0o600
    assert Path(ext.rescued_marker).exists()


def test_a_second_rescue_replaces_the_password(tmp_path: Path) -> None:
    root = image_root(tmp_path, False)
    ext = extension(tmp_path, root)
    ext.finalize_rescue(rescue_password="first")
    ext.finalize_rescue(rescue_password="$6$salt$" + "x" * 86, hashed=True)
    lines = [l for l in (root / "etc/shadow").read_text().splitlines() if l.startswith("rescue:")]
    assert lines == ["rescue:$6$salt$" + "x" * 86 + ":19000:0:99999:7:::"]
    assert len([l for l in (root / "etc/passwd").read_text().splitlines()
                if l.startswith("rescue:")]) == 1


def test_a_hash_that_would_break_the_shadow_file_is_refused(tmp_path: Path) -> None:
    root = image_root(tmp_path, False)
    ext = extension(tmp_path, root)
    with pytest.raises(errors.CommandExecutionError, match="rescue user"):
        ext.finalize_rescue(rescue_password="$5$x:y", hashed=True)
    assert (root / "etc/shadow").read_text() == BASE_SHADOW
    assert not Path(ext.rescued_marker).exists()
