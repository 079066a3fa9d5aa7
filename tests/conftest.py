# SPDX-License-Identifier: Apache-2.0
"""Fixtures and hooks shared by every tier of the suite."""

from __future__ import annotations

import pytest

from tests import prebuild

# Session fixtures whose image is built in the background from the start (tests/prebuild.py).
PREBUILT = (("coreos", "coreos_image"), ("dib", "dib_image"))


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly or not prebuild.enabled():
        return
    used = {name for item in session.items for name in getattr(item, "fixturenames", ())}
    prebuild.start([target for target, fixture in PREBUILT if fixture in used])
