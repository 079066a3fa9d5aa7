# SPDX-License-Identifier: Apache-2.0
"""The inspection flow's pure parts: URLs, collectors (built-in and third-party), answers."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from oslo_config import cfg

from ironic_python_agent import errors, inspector


def make_conf(**values: Any) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    conf.register_opts([cfg.StrOpt("api_url"), cfg.StrOpt("inspection_callback_url"),
                        cfg.StrOpt("inspection_collectors")])
    conf([])
    for name, value in values.items():
        conf.set_override(name, value)
    return conf


def test_enabled_by_callback_url_or_collectors_with_api_url() -> None:
    assert not inspector.is_enabled(make_conf())
    assert not inspector.is_enabled(make_conf(api_url="http://127.0.0.1:6385"))
    assert inspector.is_enabled(make_conf(inspection_callback_url="http://127.0.0.1:1/v1/continue"))
    assert inspector.is_enabled(make_conf(api_url="http://127.0.0.1:6385",
                                          inspection_collectors="default"))
    assert inspector.inspect(make_conf(), {}) is None


def test_callback_urls() -> None:
    def no_mdns(service: str) -> tuple[str, dict[str, str]]:
        raise AssertionError("mDNS must not be used")

    conf = make_conf(inspection_callback_url="http://a:1/v1/continue, http://b:2/v1/continue")
    assert inspector.callback_urls(conf, discover=no_mdns) == ["http://a:1/v1/continue",
                                                               "http://b:2/v1/continue"]
    conf = make_conf(api_url="http://a:6385/,http://b:6385", inspection_collectors="default")
    assert inspector.callback_urls(conf, discover=no_mdns) == [
        "http://a:6385/v1/continue_inspection", "http://b:6385/v1/continue_inspection"]


def test_callback_url_mdns_prefers_inspector_then_ironic() -> None:
    asked: list[str] = []

    def only_ironic(service: str) -> tuple[str, dict[str, str]]:
        asked.append(service)
        if service != "baremetal":
            raise errors.ServiceLookupFailure("nothing")
        return "https://127.0.0.1:6385/", {}

    conf = make_conf(inspection_callback_url="mdns")
    assert inspector.callback_urls(conf, discover=only_ironic) == [
        "https://127.0.0.1:6385/v1/continue_inspection"]
    assert asked == ["baremetal-introspection", "baremetal"]
    conf = make_conf(inspection_callback_url="mdns")
    assert inspector.callback_urls(
        conf, discover=lambda s: ("http://127.0.0.1:5050", {})) == ["http://127.0.0.1:5050/v1/continue"]


def test_collector_names_default_to_default_and_logs() -> None:
    assert inspector.collector_names(make_conf()) == ["default", "logs"]
    assert inspector.collector_names(make_conf(inspection_collectors=" lldp ,pci-devices,")) == [
        "lldp", "pci-devices"]


def test_failures_text_matches_upstream() -> None:
    failures = inspector.AccumulatedFailures()
    assert failures.get_error() is None and not failures
    failures.add("collector %s failed: %s", "lldp", "boom")
    failures.add("plain text with a %s sign but no args")
    assert failures.get_error() == ("The following errors were encountered:\n"
                                    "* collector lldp failed: boom\n"
                                    "* plain text with a %s sign but no args")
    with pytest.raises(errors.InspectionError, match="collector lldp failed"):
        failures.raise_if_needed()


def test_retry_waits_are_upstreams() -> None:
    retry = inspector.Retry()
    assert [retry.wait(n) for n in range(1, 7)] == [5.0, 5.0, 6.0, 12.0, 24.0, 30.0]


def test_node_uuid_from_inspector_and_ironic_answers() -> None:
    assert inspector.node_uuid({"uuid": "u1"}) == "u1"
    assert inspector.node_uuid({"node": {"uuid": "u2"}, "config": {}}) == "u2"
    assert inspector.node_uuid({}) is None


def test_bmc_credentials_from_inspector() -> None:
    assert inspector.ipmi_credential_commands({"uuid": "u"}) == []
    commands = inspector.ipmi_credential_commands(
        {"uuid": "u", "ipmi_setup_credentials": True, "ipmi_username": "admin",
         "ipmi_password": "s3cret"})
    assert commands[0] == ["ipmitool", "user", "set", "name", "2", "admin"]
    password_argv = commands[1]
    assert password_argv[-1] == "s3cret"
    from ironic_python_agent.run import Secret

    assert isinstance(password_argv[-1], Secret)
    with pytest.raises(errors.InspectionError, match="ipmi_password"):
        inspector.ipmi_credential_commands({"ipmi_setup_credentials": True, "ipmi_username": "a"})


PLUGIN = '''
def collect_site(data, failures):
    data["site"] = {"rack": "r12"}


def collect_broken(data, failures):
    failures.add("soft problem in %s", "broken")
    raise RuntimeError("hard problem")
'''


@pytest.fixture
def plugin_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A real third-party distribution with collectors in the entry-point group."""
    (tmp_path / "site_collectors.py").write_text(PLUGIN)
    dist = tmp_path / "site_collectors-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: site-collectors\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent("""\
        [ironic_python_agent.inspector.collectors]
        site = site_collectors:collect_site
        broken = site_collectors:collect_broken
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_third_party_collectors_run_with_upstreams_contract(plugin_on_path: Path) -> None:
    failures = inspector.AccumulatedFailures()
    data = inspector.collect(make_conf(), {}, ["site", "broken", "nosuch", "numa-topology"],
                             failures)
    assert data["site"] == {"rack": "r12"}
    error = failures.get_error() or ""
    assert "soft problem in broken" in error
    assert "collector broken failed: hard problem" in error
    assert "unknown inspection collector nosuch" in error
    assert "site" in error  # the message lists what is available


def test_daemon_interval_backs_off_and_recovers() -> None:
    from ironic_python_agent.cmd.inspect import next_interval

    base = 300.0
    interval = base
    seen = []
    for ok in (False, False, False, True):
        interval = next_interval(interval, base, ok)
        seen.append(round(interval, 1))
    assert seen == [810.0, 1200.0, 1200.0, 300.0]
