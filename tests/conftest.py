# SPDX-License-Identifier: Apache-2.0
"""Fixtures and hooks shared by every tier of the suite."""

from __future__ import annotations

import os

import pytest

from tests import prebuild

# Session fixtures whose image is built in the background (tests/prebuild.py), and
# the tiers that start those builds: the unit and functional tiers run first,
# unloaded (some time real processes), and the builds overlap the e2e flows.
PREBUILT = (("coreos", "coreos_image"), ("dib", "dib_image"))
START_TIERS = ("e2e", "boot")
_wanted: list[str] = []


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly or not prebuild.enabled():
        return
    # Under pytest-xdist every worker collects every test: one of them builds in the
    # background; a fixture on another waits for build.sh's lock, then finds the
    # image up to date.
    if os.environ.get("PYTEST_XDIST_WORKER", "gw0") != "gw0":
        return
    used = {name for item in session.items for name in getattr(item, "fixturenames", ())}
    _wanted[:] = [target for target, fixture in PREBUILT if fixture in used]


def pytest_runtest_setup(item: pytest.Item) -> None:
    if _wanted and any(part in START_TIERS for part in item.path.parts[-3:-1]):
        prebuild.start(_wanted)
        _wanted.clear()
