# SPDX-License-Identifier: Apache-2.0
"""The tinyipa image, shared by the boot tests that start it (tinyipa, ISO,
inspection)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.tinyipa_build import TOP, ensure_tinyipa
from tinyipa import cpio

OUT = Path(os.environ.get("LEAN_IPA_OUT", TOP / "out"))


@pytest.fixture(scope="session")
def tinyipa_image() -> tuple[Path, Path]:
    """(kernel, initramfs), built by ./build.sh tinyipa unless the inputs are unchanged."""
    try:
        return ensure_tinyipa(OUT)
    except RuntimeError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def tinyipa_files(tinyipa_image: tuple[Path, Path]) -> dict[str, cpio.Entry]:
    """The initramfs contents by path (several archives, see tinyipa/cpio.py)."""
    data = subprocess.run(cpio.decompress_command(tinyipa_image[1]), check=True,
                          stdout=subprocess.PIPE).stdout
    return {entry.name: entry for entry in cpio.read_entries(data)}
