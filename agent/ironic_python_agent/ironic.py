# SPDX-License-Identifier: Apache-2.0
"""The agent's client for the Ironic API: version probe, lookup, heartbeat."""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ironic_python_agent import __version__, errors
from ironic_python_agent.jsonhttp import HTTPConnectionError, Response, Session

LOG = logging.getLogger(__name__)

MIN_VERSION = (1, 31)        # the oldest API the agent talks to
LOOKUP_VERSION = (1, 62)     # agent_token in lookup
HEARTBEAT_VERSION = (1, 68)  # agent_verify_ca in heartbeat
TOKEN_VERSION = (1, 62)
AGENT_VERSION_VERSION = (1, 36)
VERIFY_CA_VERSION = (1, 68)
MAX_LOOKUP_BACKOFF = 60.0


def parse_version(text: str) -> tuple[int, int]:
    major, _, minor = str(text).partition(".")
    return int(major), int(minor)


def fmt_version(v: tuple[int, int]) -> str:
    return f"{v[0]}.{v[1]}"


def lookup_backoff(attempt: int, base: float, cap: float = MAX_LOOKUP_BACKOFF,
                   rand: Callable[[float, float], float] = random.uniform) -> float:
    """Exponential backoff with full jitter: U(base, min(cap, base·2^attempt))."""
    base = max(base, 0.05)
    return rand(base, max(base, min(cap, base * 2 ** attempt)))


@dataclass
class LookupResult:
    node: dict[str, Any]
    config: dict[str, Any]


@dataclass
class IronicClient:
    """Talks to one or more Ironic API URLs (rotated on connection errors)."""

    urls: list[str]
    session: Session
    timeout: float = 30.0
    api_version: tuple[int, int] | None = None  # fixed by config, or detected
    request_id: str | None = None
    _detected: tuple[int, int] | None = field(default=None, init=False)

    def _headers(self, version: tuple[int, int] | None = None) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if version is not None:
            headers["X-OpenStack-Ironic-API-Version"] = fmt_version(version)
        if self.request_id:
            headers["X-OpenStack-Request-ID"] = self.request_id
        return headers

    def _request(self, method: str, path: str, **kwargs: Any) -> Response:
        """Try each URL in turn on connection errors; the one that answers goes first."""
        last: Exception | None = None
        for i, base in enumerate(list(self.urls)):
            try:
                resp = self.session.request(method, base + path, timeout=self.timeout, **kwargs)
            except HTTPConnectionError as exc:
                last = exc
                continue
            if i:
                self.urls.insert(0, self.urls.pop(i))
            return resp
        assert last is not None
        raise last

    def version(self) -> tuple[int, int]:
        """The API version to speak: configured, detected once, or 1.31 for now."""
        if self.api_version is not None:
            return self.api_version
        if self._detected is not None:
            return self._detected
        try:
            resp = self._request("GET", "/", headers=self._headers())
            resp.raise_for_status()
            self._detected = parse_version(resp.json()["default_version"]["version"])
            LOG.info("Ironic API version %s", fmt_version(self._detected))
            return self._detected
        except Exception as exc:  # noqa: BLE001 - any failure means "assume the minimum"
            LOG.warning("Cannot detect the Ironic API version (%s); using %s for now",
                        exc, fmt_version(MIN_VERSION))
            return MIN_VERSION

    def lookup_once(self, macs: Sequence[str], node_uuid: str | None = None
                    ) -> tuple[LookupResult | None, int | None]:
        """One lookup. Returns (result, None) or (None, HTTP status or None for no answer)."""
        version = min(self.version(), LOOKUP_VERSION)
        params = {"addresses": ",".join(macs)}
        if node_uuid:
            params["node_uuid"] = node_uuid
        try:
            resp = self._request("GET", "/v1/lookup", params=params,
                                 headers=self._headers(version))
        except HTTPConnectionError as exc:
            LOG.warning("Lookup failed: %s", exc)
            return None, None
        if resp.status_code != 200:
            LOG.info("Lookup answered %s: %s", resp.status_code, _error_text(resp))
            return None, resp.status_code
        try:
            body = resp.json()
            node = body["node"]
            if not node.get("uuid"):
                raise KeyError("node.uuid")
            config = body.get("config")
            if config is None:
                # Old APIs put heartbeat_timeout at the top level.
                config = {"heartbeat_timeout": body["heartbeat_timeout"]}
            config.setdefault("heartbeat_timeout", body.get("heartbeat_timeout", 300))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            LOG.warning("Lookup answer is not usable (%s)", exc)
            return None, resp.status_code
        node.setdefault("properties", {})
        node.setdefault("instance_info", {})
        node.setdefault("driver_internal_info", {})
        return LookupResult(node, config), None

    def lookup(self, macs: Callable[[], Sequence[str]], timeout: float, interval: float,
               node_uuid: str | None = None, should_stop: Callable[[], bool] = lambda: False,
               sleep: Callable[[float], Any] = time.sleep) -> LookupResult:
        """Look the node up until it answers or *timeout* seconds have passed.

        404 (not yet in a lookup state), connection errors and bad answers are
        retried with exponential backoff; 409 (node locked) waits longer.
        """
        deadline = time.monotonic() + timeout
        attempt = 0
        conflict_pause = iter((5.0, 10.0))
        while True:
            result, status = self.lookup_once(macs(), node_uuid)
            if result is not None:
                return result
            attempt += 1
            delay = lookup_backoff(attempt, interval)
            if status == 409:
                delay += next(conflict_pause, 30.0)
            remaining = deadline - time.monotonic()
            if remaining <= 0 or should_stop():
                raise errors.LookupNodeError(
                    f"no node found in Ironic at {', '.join(self.urls)} for MACs "
                    f"{', '.join(macs())} within {timeout:.0f} s")
            sleep(min(delay, remaining))

    def heartbeat(self, uuid: str, callback_url: str, token: str | None,
                  verify_ca: str | None) -> None:
        """POST one heartbeat; raises a Heartbeat*Error on any failure."""
        version = min(self.version(), HEARTBEAT_VERSION)
        body: dict[str, Any] = {"callback_url": callback_url}
        if version >= TOKEN_VERSION:
            body["agent_token"] = token
        if version >= AGENT_VERSION_VERSION:
            body["agent_version"] = __version__
        if version >= VERIFY_CA_VERSION and verify_ca:
            body["agent_verify_ca"] = verify_ca
        try:
            resp = self._request("POST", f"/v1/heartbeat/{uuid}", data=json.dumps(body),
                                 headers=self._headers(version))
        except HTTPConnectionError as exc:
            raise errors.HeartbeatConnectionError(str(exc)) from exc
        if resp.status_code == 409:
            raise errors.HeartbeatConflictError(_error_text(resp))
        if resp.status_code != 202:
            raise errors.HeartbeatError(f"{resp.status_code}: {_error_text(resp)}")


def _error_text(resp: Response) -> str:
    """The message of an Ironic error answer (error_message is a dict or JSON text)."""
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:200]
    if isinstance(body, dict) and "error_message" in body:
        msg = body["error_message"]
        if isinstance(msg, str):
            try:
                msg = json.loads(msg)
            except ValueError:
                return msg
        if isinstance(msg, dict):
            return str(msg.get("faultstring") or msg.get("title") or msg)
    return str(body)[:200]
