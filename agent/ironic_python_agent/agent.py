# SPDX-License-Identifier: Apache-2.0
"""The agent: look the node up, serve the API, heartbeat until told to stop.

Start-up is kept short on purpose: hardware managers initialise in a
background thread while the lookup runs, and only the MACs (read from sysfs)
are needed to find the node.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from typing import Any

from oslo_config import cfg

from ironic_python_agent import config, errors, ironic, jsonhttp, memory, net, ntp, tls
from ironic_python_agent.extensions import base

LOG = logging.getLogger(__name__)

RESCUED_MARKER = "/etc/.rescued"
RUN_DIR = "/run/ironic-python-agent"
MIN_TOKEN_LENGTH = 32
FORCED_HEARTBEAT_GAP = 1.0   # seconds between a heartbeat and a forced one
CONFLICT_RETRY = (1.0, 2.0)  # node locked by the conductor: it will be free soon
ERROR_RETRY = (5.0, 10.0)    # anything else went wrong


class TokenLost(Exception):
    """Ironic already handed this boot's token out, and this process does not have it."""


class Agent(base.ExecuteCommandMixin):
    """One agent process. Extensions receive it as ``agent``."""

    def __init__(self, conf: cfg.ConfigOpts, params: dict[str, str],
                 run_dir: str = RUN_DIR) -> None:
        super().__init__()
        self.conf = conf
        self.params = params
        # The one handover: extensions and hardware managers read config.current().
        config.use(conf, params)
        self.run_dir = run_dir
        self.started_at: float | None = None
        self.heartbeat_timeout: float = 300.0
        self.command_body_limit: int = conf.command_body_limit
        self.client: ironic.IronicClient | None = None
        self.certificate: tls.Certificate | None = None
        self._certificate_host: str | None = None
        self._early_certificate: threading.Thread | None = None
        self.callback_url: str | None = None
        self.lockdown = False
        self._token: str | None = conf.agent_token or None
        self._stop = threading.Event()
        self._force = threading.Event()
        self._hardware_ready = threading.Event()
        self._server: Any = None
        self._threads: list[threading.Thread] = []
        self.heartbeats_sent = 0
        self.last_heartbeat_error: str | None = None

    # --- what the API and the extensions use ---------------------------------

    @property
    def node(self) -> dict[str, Any] | None:
        """The node from the lookup, kept in one place: the hardware node cache."""
        from ironic_python_agent.hardware import node_cache

        return node_cache.get()

    def get_token(self) -> str | None:
        return self._token

    def token_required(self) -> bool:
        # Standalone without a token is unauthenticated only when the operator said so
        # (allow_unauthenticated_standalone, logged at start); otherwise it fails closed.
        return not (self.conf.standalone and not self.conf.agent_token
                    and self.conf.allow_unauthenticated_standalone)

    def get_node_uuid(self) -> str:
        from ironic_python_agent.hardware import node_cache

        uuid = node_cache.uuid()
        if uuid is None:
            raise errors.UnknownNodeError()
        return str(uuid)

    def list_command_results(self) -> list[base.BaseCommandResult]:
        return list(self.command_results.values())

    def get_command_result(self, result_id: str) -> base.BaseCommandResult:
        try:
            return self.command_results[result_id]
        except KeyError:
            raise errors.RequestedObjectNotFoundError("Command Result", result_id) from None

    def execute_command(self, command_name: str, **kwargs: Any) -> base.BaseCommandResult:
        # Commands may need the hardware managers; give their start-up a moment.
        self._hardware_ready.wait(timeout=120)
        return super().execute_command(command_name, **kwargs)

    def force_heartbeat(self) -> None:
        self._force.set()

    def stop_serving(self, lockdown: bool = False, delay: float = 0.5) -> None:
        """Stop the API and heartbeats after *delay*, so the current answer gets out."""
        self.lockdown = self.lockdown or lockdown
        if delay > 0:
            timer = threading.Timer(delay, self._stop.set)
            timer.daemon = True
            timer.start()
        else:
            self._stop.set()

    # --- start-up --------------------------------------------------------------

    def _init_hardware(self) -> None:
        try:
            from ironic_python_agent import hardware
        except ImportError:
            LOG.warning("No hardware managers are installed")
            self._hardware_ready.set()
            return
        delay = self.conf.hardware_initialization_delay
        if delay:
            LOG.info("Waiting %s s before initialising hardware managers", delay)
            self._stop.wait(delay)
        try:
            hardware.get_managers()
            init = getattr(hardware, "initialize_managers", None)
            if init is not None:
                init()
        except Exception:  # noqa: BLE001 - commands will report what is missing
            LOG.exception("Hardware manager start-up failed")
        try:
            from ironic_python_agent.hardware import inventory
            LOG.info("Boot state: %s",
                     inventory.describe_boot(hardware.dispatch_to_managers("get_boot_info")))
        except Exception as exc:  # noqa: BLE001 - only a log line
            LOG.warning("Cannot tell the boot state: %s", exc)
        finally:
            self._hardware_ready.set()

    def _run_inspection(self) -> str | None:
        # Upstream's rule: a callback URL, or collectors together with an API URL.
        if not (self.conf.inspection_callback_url
                or (self.conf.inspection_collectors and self.conf.api_url)):
            return None
        try:
            from ironic_python_agent import inspector
        except ImportError:
            LOG.error("inspection_callback_url is set but inspection is not built in")
            return None
        self._hardware_ready.wait(timeout=120)
        try:
            return inspector.inspect(self.conf, self.params)
        except Exception as exc:  # noqa: BLE001 - inspection failure does not stop deploys
            LOG.error("Inspection failed: %s", exc)
            return None

    def _enable_multipath(self) -> None:
        """Before the first inventory, so that it lists each LUN once (:mod:`multipath`)."""
        if not self.conf.multipath:
            return
        from ironic_python_agent import multipath

        try:
            multipath.enable()
        except Exception as exc:  # noqa: BLE001 - paths stay separate disks; keep going
            LOG.warning("Could not enable multipath: %s", exc)

    def _bring_up_vlans(self) -> None:
        value = self.conf.enable_vlan_interfaces
        if not value:
            return
        from ironic_python_agent import vlans
        from ironic_python_agent.hardware import inventory

        if vlans.applied_before(value):
            LOG.info("ipa-enable-vlan-interfaces=%s: applied by lean-ipa-network at boot",
                     value)
            return
        parents = vlans.parent_candidates(inventory.interface_candidates(),
                                          vlans.existing_vlans())
        made = vlans.bring_up(value, parents, self.conf.lldp_timeout)
        LOG.info("VLAN interfaces made: %s", ", ".join(made) or "none")

    def _resolve_api_urls(self) -> list[str]:
        urls = config.api_urls(self.conf)
        if urls == ["mdns"]:
            from ironic_python_agent import mdns

            url, txt = mdns.get_endpoint("baremetal",
                                         attempts=self.conf.mdns.lookup_attempts)
            urls = [url.rstrip("/")]
            overrides = mdns.config_overrides(txt, self.conf.mdns.allowed_overrides)
            for name, value in overrides.items():
                self.conf.set_override(name, value)
            LOG.info("Found Ironic at %s through mDNS", urls[0])
        return urls

    def _make_client(self, urls: list[str]) -> ironic.IronicClient:
        session = jsonhttp.Session(tls.client_context(
            insecure=self.conf.insecure, cafile=self.conf.cafile,
            certfile=self.conf.certfile, keyfile=self.conf.keyfile))
        fixed = (ironic.parse_version(self.conf.ironic_api_version)
                 if self.conf.ironic_api_version else None)
        return ironic.IronicClient(urls=urls, session=session,
                                   timeout=self.conf.http_request_timeout,
                                   api_version=fixed, request_id=self.conf.global_request_id)

    def process_lookup_data(self, result: ironic.LookupResult) -> None:
        """Adopt the node, token and config Ironic sent with the lookup."""
        cfg_data = result.config
        node = result.node
        if cfg_data.get("agent_skip_bmc_detect"):
            node["skip_bmc_detect"] = True
        self.heartbeat_timeout = float(cfg_data["heartbeat_timeout"])
        token = cfg_data.get("agent_token")
        if token == "******":
            if not self._token:
                raise TokenLost()
        elif isinstance(token, str) and len(token) >= MIN_TOKEN_LENGTH:
            self._token = token
        elif token:
            LOG.warning("Ignoring an invalid agent token from the lookup")
        overrides = {
            "disable_deep_image_inspection": cfg_data.get("disable_deep_image_inspection"),
            "permitted_image_formats": cfg_data.get("permitted_image_formats"),
            "md5_enabled": cfg_data.get("agent_md5_checksum_enable"),
        }
        for name in ("tls_min_version", "tls_cipher_suites"):
            if cfg_data.get(name):
                overrides[name] = cfg_data[name]
        if cfg_data.get("enable_bios_bootloader_install"):
            overrides["enable_bios_bootloader_install"] = True
        for name, value in overrides.items():
            if value is not None:
                try:
                    self.conf.set_override(name, value)
                except (ValueError, cfg.Error) as exc:
                    LOG.warning("Ignoring lookup config %s=%r: %s", name, value, exc)
        from ironic_python_agent import hardware

        # Stores the node (Agent.node reads it back) and waits for a new node's disks.
        hardware.cache_node(node)
        if self.client is not None:
            hardware.save_api_client(self.client, self.conf.lookup_timeout,
                                     self.conf.lookup_interval)

    def _lookup(self, node_uuid: str | None) -> None:
        assert self.client is not None
        bootif = self.params.get("BOOTIF")
        result = self.client.lookup(
            lambda: net.list_macs(bootif=bootif), timeout=self.conf.lookup_timeout,
            interval=self.conf.lookup_interval, node_uuid=node_uuid,
            should_stop=self._stop.is_set)
        LOG.info("Lookup found node %s", result.node.get("uuid"))
        self.process_lookup_data(result)

    def _advertise(self) -> tuple[str, str]:
        host = self.conf.advertise_host
        if not host and self.conf.network_interface:
            host = net.interface_address(self.conf.network_interface)
        if not host:
            urls = self.client.urls if self.client else []
            host = (net.advertise_address(urls, self.conf.ip_lookup_attempts,
                                          self.conf.ip_lookup_sleep) if urls else "127.0.0.1")
        protocol = self.conf.advertise_protocol
        return host, protocol

    def _auto_tls_wanted(self) -> bool:
        conf = self.conf
        if conf.listen_tls or (conf.tls_cert_file and conf.tls_key_file):
            return False
        version = self.client.version() if self.client else None
        return bool(conf.enable_auto_tls and version is not None
                    and version >= ironic.VERIFY_CA_VERSION)

    def _make_certificate(self, host: str) -> None:
        self.certificate = tls.make_self_signed(
            host, self.run_dir, curve=self.conf.tls_certificate_curve,
            clock_skew=self.conf.auto_tls_allowed_clock_skew)
        self._certificate_host = host

    def _start_early_certificate(self) -> None:
        """Make the API certificate while the lookup waits for Ironic.

        Only when the advertise address is already known; otherwise (no route
        yet) it is made after the lookup, as before.
        """
        if not self._auto_tls_wanted():
            return
        host = self.conf.advertise_host
        if not host and not self.conf.network_interface and self.client is not None:
            try:  # one try, no waiting: the lookup is what waits for the network
                host = net.advertise_address(self.client.urls, attempts=1)
            except errors.LookupAgentIPError:
                return
        if not host:
            return

        def work() -> None:
            try:
                self._make_certificate(host)
            except Exception as exc:  # noqa: BLE001 - made again after the lookup
                LOG.debug("Early certificate failed: %s", exc)

        self._early_certificate = threading.Thread(target=work, name="auto-tls", daemon=True)
        self._early_certificate.start()

    def _server_tls(self, host: str, protocol: str) -> tuple[Any, str]:
        """The server SSL context (or None) and the protocol to advertise."""
        conf = self.conf
        if conf.listen_tls or (conf.tls_cert_file and conf.tls_key_file):
            if not (conf.tls_cert_file and conf.tls_key_file):
                raise config.ConfigError("listen_tls needs tls_cert_file and tls_key_file")
            ctx = tls.server_context(conf.tls_cert_file, conf.tls_key_file,
                                     conf.tls_min_version, conf.tls_cipher_suites)
            return ctx, "https"
        if self._auto_tls_wanted():
            early = self._early_certificate
            if early is not None:
                early.join()
            if self.certificate is None or self._certificate_host != host:
                self._make_certificate(host)
            assert self.certificate is not None
            ctx = tls.server_context(self.certificate.cert_file, self.certificate.key_file,
                                     conf.tls_min_version, conf.tls_cipher_suites)
            return ctx, "https"
        return None, protocol

    def _start_server(self, ssl_context: Any) -> None:
        from ironic_python_agent import server
        from ironic_python_agent.api import Application

        host, port = self.conf.listen_host, self.conf.listen_port
        limits = server.Limits.for_process(self.conf.api_max_connections,
                                           self.conf.api_read_timeout)
        app = Application(self, trusted_proxies=self.conf.api_trusted_proxies)
        try:
            self._server = server.APIServer(host, port, app, ssl_context, limits)
        except OSError as exc:
            if host != "::":
                raise
            LOG.info("Cannot listen on [::]:%s (%s); using 0.0.0.0", port, exc)
            self._server = server.APIServer("0.0.0.0", port, app, ssl_context, limits)
        thread = threading.Thread(target=self._server.serve_forever, name="agent-api",
                                  daemon=True)
        thread.start()
        self._threads.append(thread)
        LOG.info("Serving the agent API on %s:%s%s (at most %d connections, %.0f s "
                 "read timeout)", host, self._server.server_port,
                 " over TLS" if ssl_context else "", limits.max_connections,
                 limits.read_timeout)

    # --- heartbeats ------------------------------------------------------------

    def _heartbeat_once(self) -> None:
        assert self.client is not None and self.callback_url is not None
        self.client.heartbeat(self.get_node_uuid(), self.callback_url, self._token,
                              self.certificate.pem if self.certificate else None)
        self.heartbeats_sent += 1

    def _heartbeat_loop(self) -> None:
        next_at = time.monotonic()  # the first one goes out at once
        last = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            forced = self._force.is_set() and now - last >= FORCED_HEARTBEAT_GAP
            if now < next_at and not forced:
                wake = min(next_at - now, 0.5 if self._force.is_set() else 5.0)
                if self._force.wait(timeout=wake) and not self._stop.is_set():
                    # A command just finished: respect the gap, then send.
                    gap = last + FORCED_HEARTBEAT_GAP - time.monotonic()
                    if gap > 0:
                        self._stop.wait(gap)
                continue
            self._force.clear()
            last = time.monotonic()
            try:
                self._heartbeat_once()
            except errors.HeartbeatConflictError as exc:
                self.last_heartbeat_error = str(exc)
                LOG.info("Heartbeat conflict (node busy): %s", exc)
                next_at = time.monotonic() + random.uniform(*CONFLICT_RETRY)
                continue
            except Exception as exc:  # noqa: BLE001 - keep heartbeating through outages
                self.last_heartbeat_error = str(exc)
                LOG.warning("Heartbeat failed: %s", exc)
                next_at = time.monotonic() + random.uniform(*ERROR_RETRY)
                continue
            self.last_heartbeat_error = None
            interval = self.heartbeat_timeout * random.uniform(0.3, 0.6)
            LOG.info("Heartbeat sent; next in %.1f s", interval)
            next_at = time.monotonic() + interval

    # --- the main sequence -----------------------------------------------------

    def run(self) -> None:
        """Run until stopped (signal, rescue, lockdown). Raises on fatal errors."""
        self.started_at = time.time()
        memory.return_freed_memory()
        base.init_ext_manager(self)
        hw = threading.Thread(target=self._init_hardware, name="hardware-init", daemon=True)
        hw.start()

        if os.path.exists(RESCUED_MARKER):
            LOG.info("%s exists: this node is rescued; not serving the API", RESCUED_MARKER)
            self._stop.wait()
            return

        node_uuid = None
        standalone = self.conf.standalone
        if standalone and not self.conf.agent_token:
            if self.conf.allow_unauthenticated_standalone:
                LOG.warning("UNAUTHENTICATED: standalone without agent_token and "
                            "allow_unauthenticated_standalone=True: anyone who reaches "
                            "%s:%s can erase disks and write images",
                            self.conf.listen_host, self.conf.listen_port)
            else:
                LOG.error("Standalone without agent_token: every command is refused "
                          "(401). Set agent_token (ipa-agent-token), or "
                          "allow_unauthenticated_standalone=True on a closed bench.")
        self._enable_multipath()
        if not standalone:
            net.wait_for_macs(timeout=60, bootif=self.params.get("BOOTIF"))
            # Before inspection and lookup, so that their inventory lists the VLANs.
            self._bring_up_vlans()
            node_uuid = self._run_inspection()
            urls = self._resolve_api_urls()
            # As upstream: step the clock before anything runs (mDNS may name the server).
            ntp.sync_clock(self.conf.ntp_server, fail=self.conf.fail_if_clock_not_set)
            if urls:
                self.client = self._make_client(urls)
                self._start_early_certificate()
                try:
                    self._lookup(node_uuid)
                except TokenLost:
                    # Nobody can ever drive this agent until Ironic reboots the node:
                    # idle quietly instead of restarting in a loop.
                    LOG.error("Ironic already issued the agent token for this boot and "
                              "this agent does not have it (restarted agent?). Idling "
                              "until the node is rebooted; pass ipa-agent-token to avoid it.")
                    self._stop.wait()
                    return
            else:
                LOG.error("No ipa-api-url / api_url configured: serving the API without "
                          "Ironic; commands need ipa-agent-token")

        host, protocol = self._advertise()
        ssl_context, protocol = self._server_tls(host, protocol)
        self._start_server(ssl_context)
        port = self.conf.advertise_port
        if self.conf.listen_port == 0 and self._server is not None:
            port = self._server.server_port  # an ephemeral port (tests)
        self.callback_url = f"{protocol}://{net.url_host(host)}:{port}"

        if self.client is not None and self.node is not None:
            hb = threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)
            hb.start()
            self._threads.append(hb)
        self._stop.wait()
        self.shutdown()
        if self.lockdown:
            self._lock_down()

    def shutdown(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=2)

    def _lock_down(self) -> None:
        """Take every link down and stay alive, so no supervisor restarts the agent."""
        from ironic_python_agent.run import CommandError, run

        for name in sorted(os.listdir("/sys/class/net")):
            if name != "lo":
                try:
                    run(["ip", "link", "set", name, "down"])
                except CommandError as exc:
                    LOG.warning("Cannot take %s down: %s", name, exc)
        LOG.info("Locked down; sleeping forever")
        while True:
            time.sleep(3600)
