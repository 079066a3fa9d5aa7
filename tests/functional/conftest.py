# SPDX-License-Identifier: Apache-2.0
"""Fixtures shared by the functional tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.imageserver import ImageServer


@pytest.fixture
def server() -> Iterator[ImageServer]:
    """A loopback HTTP server for images (a module may define its own ``server``)."""
    with ImageServer() as srv:
        yield srv
