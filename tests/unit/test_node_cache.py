# SPDX-License-Identifier: Apache-2.0
"""The node cache: one node, small in RAM however big the node Ironic sends."""

from __future__ import annotations

import collections.abc

import pytest

from ironic_python_agent.hardware import node_cache


@pytest.fixture(autouse=True)
def empty_cache() -> collections.abc.Iterator[None]:
    node_cache.forget()
    yield
    node_cache.forget()


def test_small_node_is_kept_as_given() -> None:
    node = {"uuid": "n1", "properties": {"cpus": 2}}
    assert node_cache.put(node) is True
    assert node_cache.get() is node
    assert node_cache.uuid() == "n1"


def test_big_node_is_packed_and_reads_back_equal() -> None:
    node = {"uuid": "n1", "instance_info": {"configdrive": "H4sI" + "x" * (4 << 20)}}
    node_cache.put(node)
    assert node_cache._state["node"] is None
    assert len(node_cache._state["packed"]) < node_cache.PACK_ABOVE
    assert node_cache.get() == node
    assert node_cache.uuid() == "n1"


def test_new_node_is_reported_once_whatever_its_size() -> None:
    big = {"uuid": "n1", "extra": {"blob": "A" * (2 << 20)}}
    assert node_cache.put(big) is True
    assert node_cache.put({"uuid": "n1"}) is False
    assert node_cache.put(big) is False
    assert node_cache.put({"uuid": "n2"}) is True
    assert node_cache.put(None) is False
    assert node_cache.get() is None and node_cache.uuid() is None


def test_a_node_that_is_not_json_is_kept_unpacked() -> None:
    node = {"uuid": "n1", "when": object()}
    node_cache.put(node)
    assert node_cache.get() is node
