# SPDX-License-Identifier: Apache-2.0
"""In-band inspection: collect the inventory, post it to the inspection callback.

The flow (:func:`inspect`) runs once at agent start-up, before lookup, and
from the ``ironic-collect-introspection-data`` console script:

1. pick the callback URL(s): ``inspection_callback_url`` (a comma list, or
   ``mdns``), else each ``api_url`` + ``/v1/continue_inspection``;
2. run the collectors named in ``inspection_collectors`` (default
   ``default,logs``) in order; a collector that raises is logged and skipped;
3. POST the data, with ``error`` summing up what failed, retrying on
   connection errors, 5xx and 409;
4. return the node UUID from the answer (Ironic's ``/v1/continue_inspection``
   and ironic-inspector's ``/v1/continue`` both send ``{"uuid": ...}``).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import requests

from ironic_python_agent import errors, mdns
from ironic_python_agent.inspection import collectors as builtin
from ironic_python_agent.run import Secret, run

LOG = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "ironic_python_agent.inspector.collectors"
DEFAULT_COLLECTORS = "default,logs"
INSPECTOR_PATH = "/v1/continue"
IRONIC_PATH = "/v1/continue_inspection"


class AccumulatedFailures:
    """Problems gathered while collecting, reported in the ``error`` key.

    Collectors call ``add(fmt, *args)`` (upstream's interface); the text goes
    to Ironic, which fails the inspection when ``error`` is set.
    """

    def __init__(self) -> None:
        self._failures: list[str] = []

    def add(self, fmt: Any, *args: Any) -> None:
        text = str(fmt) % args if args else str(fmt)
        LOG.error("Inspection: %s", text)
        self._failures.append(text)

    def get_error(self) -> str | None:
        if not self._failures:
            return None
        return "The following errors were encountered:\n" + "\n".join(
            f"* {f}" for f in self._failures)

    def raise_if_needed(self) -> None:
        error = self.get_error()
        if error:
            raise errors.InspectionError(error)

    def __bool__(self) -> bool:
        return bool(self._failures)

    def __len__(self) -> int:
        return len(self._failures)


@dataclass(frozen=True)
class Retry:
    """How the post is retried: ``attempts`` tries, waiting ``multiplier * 2**n``
    seconds clamped to [min_wait, max_wait] in between (upstream's numbers)."""

    attempts: int = 5
    multiplier: float = 1.5
    min_wait: float = 5.0
    max_wait: float = 30.0

    def wait(self, attempt: int) -> float:
        """Seconds to sleep after failed try number *attempt* (1-based)."""
        return float(min(self.max_wait, max(self.min_wait, self.multiplier * 2 ** (attempt - 1))))


@dataclass(frozen=True)
class Outcome:
    """What one inspection run produced."""

    node_uuid: str | None
    response: dict[str, Any]
    error: str | None
    url: str


def _option(conf: Any, name: str, default: Any = None) -> Any:
    return builtin.Context(conf=conf).option(name, default)


def _mdns_option(conf: Any, name: str, default: Any) -> Any:
    try:
        value = getattr(conf.mdns, name)
    except Exception:  # noqa: BLE001 - no [mdns] group registered
        return default
    return default if value is None else value


def is_enabled(conf: Any) -> bool:
    """Upstream's rule: a callback URL, or collectors together with an API URL."""
    return bool(_option(conf, "inspection_callback_url")
                or (_option(conf, "inspection_collectors") and _option(conf, "api_url")))


def callback_urls(conf: Any, *, discover: Callable[[str], tuple[str, dict[str, str]]]
                  = mdns.get_endpoint) -> list[str]:
    """The URLs to post to, in order of preference (the next on a connection error).

    ``mdns`` asks for ``baremetal-introspection`` (ironic-inspector,
    ``/v1/continue``) and falls back to ``baremetal`` (Ironic's built-in
    inspection, ``/v1/continue_inspection``).
    """
    configured = _option(conf, "inspection_callback_url")
    if configured and configured.strip() != "mdns":
        return [u.strip() for u in configured.split(",") if u.strip()]
    if configured:
        try:
            return [discover("baremetal-introspection")[0].rstrip("/") + INSPECTOR_PATH]
        except errors.ServiceLookupFailure as exc:
            LOG.info("No ironic-inspector through mDNS (%s); looking for Ironic", exc)
            return [discover("baremetal")[0].rstrip("/") + IRONIC_PATH]
    api = _option(conf, "api_url") or ""
    urls = []
    for url in (u.strip() for u in api.split(",") if u.strip()):
        if url == "mdns":
            url = discover("baremetal")[0]
        urls.append(url.rstrip("/") + IRONIC_PATH)
    return urls


def collector_names(conf: Any) -> list[str]:
    text = _option(conf, "inspection_collectors") or DEFAULT_COLLECTORS
    return [n.strip() for n in text.split(",") if n.strip()]


def load_collectors(names: Sequence[str], failures: AccumulatedFailures
                    ) -> list[tuple[str, Callable[..., None]]]:
    """Built-in collectors by name, others from the entry-point group.

    An unknown name is recorded in *failures* (so the post reports it) and
    skipped.
    """
    plugins = {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}
    found: list[tuple[str, Callable[..., None]]] = []
    for name in names:
        if name in builtin.BUILTIN:
            found.append((name, builtin.BUILTIN[name]))
            continue
        if name not in plugins:
            failures.add("unknown inspection collector %s (entry points in group %s: %s)",
                         name, ENTRY_POINT_GROUP, ", ".join(sorted(plugins)) or "none")
            continue
        try:
            found.append((name, plugins[name].load()))
        except Exception as exc:  # noqa: BLE001
            failures.add("cannot load inspection collector %s: %s", name, exc)
    return found


def collect(conf: Any, params: Mapping[str, str], names: Sequence[str],
            failures: AccumulatedFailures) -> dict[str, Any]:
    """Run the collectors named *names*; failures are recorded, never raised."""
    context = builtin.Context(conf=conf, params=dict(params), collectors=tuple(names))
    data: dict[str, Any] = {}
    for name, collector in load_collectors(names, failures):
        LOG.debug("Running inspection collector %s", name)
        try:
            if name in builtin.BUILTIN and collector is builtin.BUILTIN[name]:
                collector(data, failures, context)
            else:
                collector(data, failures)
        except Exception as exc:  # noqa: BLE001 - one collector must not stop the post
            LOG.exception("Inspection collector %s failed", name)
            failures.add("collector %s failed: %s", name, exc)
    return data


def _session(conf: Any) -> requests.Session:
    session = requests.Session()
    cafile = _option(conf, "cafile")
    if _option(conf, "insecure", False):
        session.verify = False
    elif cafile:
        session.verify = cafile
    certfile, keyfile = _option(conf, "certfile"), _option(conf, "keyfile")
    if certfile and keyfile:
        session.cert = (certfile, keyfile)
    return session


def post(urls: Sequence[str], data: Mapping[str, Any], conf: Any = None, *,
         retry: Retry = Retry(), sleep: Callable[[float], None] = time.sleep
         ) -> tuple[str, dict[str, Any]]:
    """POST *data* as JSON to the first URL that answers; return ``(url, answer)``.

    Connection errors move on to the next URL; when every URL failed, or the
    answer is 5xx or 409, the post is retried per *retry*. No API version
    header is sent, so Ironic answers as ironic-inspector would.

    :raises InspectionError: when no try succeeded, or on any other status >= 400.
    """
    if not urls:
        raise errors.InspectionError("no inspection callback URL configured")
    body = json.dumps(data)
    timeout = float(_option(conf, "http_request_timeout", 30))
    last = "no attempt made"
    with _session(conf) as session:
        for attempt in range(1, retry.attempts + 1):
            for url in urls:
                try:
                    resp = session.post(url, data=body, timeout=timeout,
                                        headers={"Content-Type": "application/json"})
                except requests.ConnectionError as exc:
                    last = f"cannot connect to {url}: {exc}"
                    LOG.warning("Inspection post, try %d of %d: %s", attempt, retry.attempts, last)
                    continue
                if resp.status_code >= 500 or resp.status_code == 409:
                    last = f"{url} answered error {resp.status_code}: {resp.text[:500]}"
                    LOG.warning("Inspection post, try %d of %d: %s", attempt, retry.attempts, last)
                    break
                if resp.status_code >= 400:
                    raise errors.InspectionError(
                        f"{url} answered error {resp.status_code}: {resp.text[:2000]}")
                try:
                    answer = resp.json() if resp.content else {}
                except ValueError:
                    answer = {}
                return url, answer if isinstance(answer, dict) else {}
            if attempt < retry.attempts:
                sleep(retry.wait(attempt))
    tries = "1 try" if retry.attempts == 1 else f"{retry.attempts} tries"
    raise errors.InspectionError(f"inspection data not delivered after {tries}: {last}")


def node_uuid(answer: Mapping[str, Any]) -> str | None:
    """The node UUID of a callback answer: ``{"uuid"}``, or Ironic >= 1.84's ``{"node"}``."""
    uuid = answer.get("uuid")
    if not uuid and isinstance(answer.get("node"), Mapping):
        uuid = answer["node"].get("uuid")
    return str(uuid) if uuid else None


# Upstream's collector functions lived in this module; keep their names importable.
collect_default = builtin.collect_default
collect_logs = builtin.collect_logs
collect_extra_hardware = builtin.collect_extra_hardware
collect_pci_devices_info = builtin.collect_pci_devices
collect_lldp = builtin.collect_lldp
collect_usb_devices = builtin.collect_usb_devices
wait_for_dhcp = builtin.wait_for_dhcp

IPMI_USER_ID = "2"
IPMI_CHANNEL = "1"


def ipmi_credential_commands(answer: Mapping[str, Any]) -> list[list[str]]:
    """ipmitool calls for ironic-inspector's old ``ipmi_setup_credentials`` answer.

    Empty unless the answer asks for it with a user name and password. The
    password is a :class:`Secret`, so logs show ``***``.
    """
    if not answer.get("ipmi_setup_credentials"):
        return []
    user, password = answer.get("ipmi_username"), answer.get("ipmi_password")
    if not user or not password:
        raise errors.InspectionError("ipmi_setup_credentials without ipmi_username and "
                                     "ipmi_password in the inspector's answer")
    return [
        ["ipmitool", "user", "set", "name", IPMI_USER_ID, str(user)],
        ["ipmitool", "user", "set", "password", IPMI_USER_ID, Secret(str(password))],
        ["ipmitool", "user", "priv", IPMI_USER_ID, "4", IPMI_CHANNEL],
        ["ipmitool", "user", "enable", IPMI_USER_ID],
        ["ipmitool", "channel", "setaccess", IPMI_CHANNEL, IPMI_USER_ID,
         "link=on", "ipmi=on", "callin=on", "privilege=4"],
    ]


IPMI_DEVICES = ("/dev/ipmi0", "/dev/ipmi/0", "/dev/ipmidev/0")


def setup_bmc_credentials(answer: Mapping[str, Any]) -> bool:
    """Apply BMC credentials the inspector sent; True when some were set."""
    commands = ipmi_credential_commands(answer)
    if commands and not any(os.path.exists(d) for d in IPMI_DEVICES):
        raise errors.InspectionError("the inspector sent BMC credentials but this machine "
                                     "has no IPMI device")
    for argv in commands:
        run(argv)
    if commands:
        LOG.info("BMC credentials set for user %s as the inspector asked",
                 answer.get("ipmi_username"))
    return bool(commands)


def run_inspection(conf: Any, params: Mapping[str, str], *, retry: Retry = Retry(),
                   urls: Sequence[str] | None = None) -> Outcome:
    """Collect, post and interpret the answer; see :func:`inspect`.

    :raises InspectionError: when the data could not be delivered.
    """
    if urls is None:
        try:
            urls = callback_urls(conf)
        except errors.ServiceLookupFailure as exc:
            raise errors.InspectionError(f"cannot find the inspection callback: {exc}") from exc
    urls = list(urls)
    if not urls:
        raise errors.InspectionError("inspection is enabled but no callback URL is known")
    failures = AccumulatedFailures()
    names = collector_names(conf)
    data = collect(conf, params, names, failures)
    data["error"] = failures.get_error()
    url, answer = post(urls, data, conf, retry=retry)
    uuid = node_uuid(answer)
    LOG.info("Inspection data posted to %s%s", url, f"; node {uuid}" if uuid else "")
    try:
        setup_bmc_credentials(answer)
    except Exception as exc:  # noqa: BLE001 - the data is delivered; report and go on
        LOG.error("Cannot set the BMC credentials the inspector sent: %s", exc)
    return Outcome(uuid, answer, data["error"], url)


def inspect(conf: Any, params: Mapping[str, str], *, retry: Retry = Retry()) -> str | None:
    """Run in-band inspection if it is enabled; return the node UUID or None.

    :param conf: an oslo ``ConfigOpts`` with the ``[DEFAULT]`` options
        ``inspection_callback_url`` (comma list or ``mdns``),
        ``inspection_collectors`` (default ``default,logs``), ``api_url``,
        ``inspection_dhcp_all_interfaces``, ``inspection_dhcp_wait_timeout``,
        ``lldp_timeout``, ``insecure``, ``cafile``, ``certfile``, ``keyfile``
        and ``http_request_timeout``; missing options take their defaults.
    :param params: the kernel command line as a dict (``BOOTIF``,
        ``ipa-inspection-benchmarks``).
    :param retry: how the post is retried (tests shorten the waits).
    :returns: the node UUID from the callback's answer; None when inspection
        is not enabled or the answer carried no UUID. Collector failures do
        not raise: they travel in the ``error`` key (Ironic then fails the
        inspection) and are logged.
    :raises InspectionError: when the data could not be delivered (no URL,
        every try failed, or a 4xx answer). The agent logs it and goes on to
        lookup, as upstream does.
    """
    if not is_enabled(conf):
        return None
    outcome = run_inspection(conf, params, retry=retry)
    if outcome.error:
        LOG.warning("Inspection data was posted with errors:\n%s", outcome.error)
    return outcome.node_uuid
