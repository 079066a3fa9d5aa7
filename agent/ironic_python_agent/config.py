# SPDX-License-Identifier: Apache-2.0
"""The agent's options, named as upstream, and how the kernel command line feeds them.

Precedence, lowest first: built-in default < kernel command line (and vmedia
``parameters.txt``) < config files < CLI flags. Kernel parameters become the
*defaults* of the options, so config files and flags override them.

Nothing here runs at import time: :func:`register_opts` takes the parsed
parameters explicitly.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from oslo_config import cfg

PROG = "ironic-python-agent"
CONFIG_DIRS = ("/etc/ironic-python-agent", "/etc/ironic-python-agent.d",
               "/etc/ironic-python-agent.conf.d")


class ConfigError(Exception):
    """A parameter or option value that cannot be used; the message names it."""


@dataclass(frozen=True)
class Param:
    """One kernel command line parameter and the option it sets."""

    key: str
    opt: str
    group: str = "DEFAULT"


def _api_urls(value: str) -> str:
    """Validate ``api_url``: ``mdns`` or a comma list of http(s) URLs."""
    value = value.strip()
    if value == "mdns":
        return value
    for url in value.split(","):
        parts = urllib.parse.urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url!r} is not an http(s) URL")
        if parts.port is not None and not 0 < parts.port < 65536:
            raise ValueError(f"{url!r} has an invalid port")
    return value


def _url_or_mdns(value: str) -> str:
    value = value.strip()
    if value in ("mdns", "") or value.startswith(("http://", "https://")):
        return _api_urls(value) if value not in ("mdns", "") else value
    raise ValueError(f"{value!r} is not an http(s) URL or 'mdns'")


def _opts() -> dict[str, list[cfg.Opt]]:
    """Fresh option objects (defaults are set per registration)."""
    return {
        "DEFAULT": [
            cfg.StrOpt("api_url", help="Ironic API URL(s), comma separated, or 'mdns'."),
            cfg.StrOpt("global_request_id", help="Request id sent to Ironic."),
            cfg.StrOpt("listen_host", default="::", sample_default="::",
                       help="Address the agent API binds to."),
            cfg.PortOpt("listen_port", default=9999, help="Port the agent API binds to."),
            cfg.BoolOpt("listen_tls", default=False, help="Serve the API over TLS with "
                        "tls_cert_file/tls_key_file."),
            cfg.StrOpt("tls_cert_file"), cfg.StrOpt("tls_key_file"),
            cfg.StrOpt("advertise_host", help="Address Ironic calls back (default: the "
                       "address that routes to the API host)."),
            cfg.PortOpt("advertise_port", default=9999),
            cfg.StrOpt("advertise_protocol", default="http", choices=["http", "https"]),
            cfg.StrOpt("tls_min_version", default="1.2", choices=["1.2", "1.3"]),
            cfg.StrOpt("tls_cipher_suites"),
            cfg.StrOpt("tls_certificate_curve", default="p384", choices=["p256", "p384", "p521"]),
            cfg.BoolOpt("enable_auto_tls", default=True,
                        help="Generate a self-signed certificate for the API."),
            cfg.IntOpt("auto_tls_allowed_clock_skew", default=3600, min=0),
            cfg.IntOpt("ip_lookup_attempts", default=6, min=1),
            cfg.IntOpt("ip_lookup_sleep", default=10, min=0),
            cfg.StrOpt("network_interface"),
            cfg.IntOpt("lookup_timeout", default=600, min=0),
            cfg.IntOpt("lookup_interval", default=1, min=0),
            cfg.FloatOpt("lldp_timeout", default=30.0),
            cfg.BoolOpt("collect_lldp", default=False),
            cfg.StrOpt("inspection_callback_url"),
            cfg.StrOpt("inspection_collectors"),
            cfg.IntOpt("inspection_dhcp_wait_timeout", default=60, min=0),
            cfg.BoolOpt("inspection_dhcp_all_interfaces", default=False),
            cfg.StrOpt("inspection_benchmarks"),
            cfg.IntOpt("hardware_initialization_delay", default=0, min=0),
            cfg.IntOpt("disk_wait_attempts", default=10, min=0),
            cfg.IntOpt("disk_wait_delay", default=3, min=0),
            cfg.BoolOpt("insecure", default=False, help="Do not verify TLS certificates."),
            cfg.StrOpt("cafile"), cfg.StrOpt("certfile"), cfg.StrOpt("keyfile"),
            cfg.StrOpt("ntp_server"),
            cfg.StrOpt("agent_token", secret=True),
            cfg.IntOpt("image_download_connection_timeout", default=60, min=1),
            cfg.IntOpt("image_download_connection_retries", default=9, min=0),
            cfg.IntOpt("image_download_connection_retry_interval", default=10, min=0),
            cfg.IntOpt("image_download_max_duration", default=0, min=0),
            cfg.StrOpt("ironic_api_version"),
            cfg.StrOpt("enable_vlan_interfaces", default=""),
            cfg.BoolOpt("ignore_bootloader_failure"),
            cfg.IntOpt("inject_files_priority", default=0),
            cfg.BoolOpt("guard_special_filesystems", default=True),
            cfg.BoolOpt("enable_discard_erase", default=False),
            cfg.IntOpt("http_request_timeout", default=30, min=1),
            cfg.BoolOpt("standalone", default=False,
                        help="Serve the API only: no lookup, no heartbeats."),
            cfg.BoolOpt("debug", default=False, help="Log at DEBUG level."),
            cfg.StrOpt("log_file"),
            cfg.BoolOpt("introspection_daemon", default=False),
            cfg.IntOpt("introspection_daemon_post_interval", default=300, min=1),
            cfg.BoolOpt("fail_if_clock_not_set", default=False),
            cfg.StrOpt("image_server_user"), cfg.StrOpt("image_server_password", secret=True),
            cfg.StrOpt("image_server_auth_strategy", default="noauth",
                       choices=["noauth", "http_basic"]),
            cfg.BoolOpt("md5_enabled", default=False),
            cfg.BoolOpt("config_drive_rebuild", default=False),
            cfg.BoolOpt("disable_deep_image_inspection", default=False),
            cfg.ListOpt("permitted_image_formats", default=["raw", "gpt", "qcow2"]),
            cfg.BoolOpt("disable_bootc_deploy", default=False),
            cfg.BoolOpt("enable_bios_bootloader_install", default=False),
            cfg.BoolOpt("multipath", default=True,
                        help="Start multipathd before the first inventory when the image "
                        "has multipath-tools, so that each LUN is one disk (lean-ipa)."),
            cfg.IntOpt("command_body_limit", default=64 * 1024 * 1024, min=1024,
                       help="Largest request body the API accepts, in bytes (lean-ipa)."),
            cfg.IntOpt("api_max_connections", default=100, min=1,
                       help="Open API connections held at most; above, the one idle "
                       "longest is closed, or the new one answered 503 (lean-ipa)."),
            cfg.FloatOpt("api_read_timeout", default=10.0, min=0.5,
                         help="Seconds a client gets for a request head, for each read of "
                         "a body, and idle between keep-alive requests (lean-ipa)."),
            cfg.ListOpt("api_trusted_proxies", default=[],
                        help="Addresses whose X-Forwarded-For names the client in the "
                        "API log; from anyone else it is ignored (lean-ipa)."),
            cfg.BoolOpt("allow_unauthenticated_standalone", default=False,
                        help="Standalone without agent_token accepts commands from "
                        "anyone (a lab bench only). Off: such an agent answers 401."),
            cfg.ListOpt("block_device_allowlist", default=[],
                        help="Only these block devices (kernel names such as 'sdb' or "
                             "'loop3', or /dev paths) are listed, used and erased by the "
                             "generic hardware manager. Empty means all disks. Loop "
                             "devices are listed only when named here (lean-ipa)."),
            cfg.BoolOpt("skip_bmc_detect", default=False,
                        help="Report no BMC addresses (no ipmitool runs) (lean-ipa)."),
        ],
        "mdns": [
            cfg.BoolOpt("use_mdns", default=False),
            cfg.ListOpt("allowed_overrides", default=["inspection_callback_url", "ntp_server"]),
            cfg.IntOpt("lookup_attempts", default=3, min=1),
            cfg.DictOpt("params", default={}),
            cfg.ListOpt("interfaces"),
        ],
        # Read by upstream's container hardware manager (and vendor managers like it).
        "container": [
            cfg.BoolOpt("allow_arbitrary_containers", default=False),
            cfg.ListOpt("allowed_containers", default=[]),
            cfg.StrOpt("container_steps_file",
                       default="/etc/ironic-python-agent.d/mysteps.yaml"),
            cfg.StrOpt("runner", default="podman", choices=["podman", "docker"]),
            cfg.ListOpt("pull_options", default=[]),
            cfg.ListOpt("run_options", default=["--rm", "--network=host"]),
        ],
        "disk_utils": [
            cfg.IntOpt("efi_system_partition_size", default=550),
            cfg.IntOpt("bios_boot_partition_size", default=1),
            cfg.StrOpt("dd_block_size", default="1M"),
            cfg.IntOpt("partition_detection_attempts", default=3),
            cfg.IntOpt("partprobe_attempts", default=10),
            cfg.IntOpt("image_convert_memory_limit", default=2048),
            cfg.IntOpt("image_convert_attempts", default=3),
        ],
    }


PARAMS: tuple[Param, ...] = tuple(
    Param(key, opt, group) for key, opt, group in (
        ("ipa-api-url", "api_url", "DEFAULT"),
        ("ipa-global-request-id", "global_request_id", "DEFAULT"),
        ("ipa-listen-host", "listen_host", "DEFAULT"),
        ("ipa-listen-port", "listen_port", "DEFAULT"),
        ("ipa-advertise-host", "advertise_host", "DEFAULT"),
        ("ipa-advertise-port", "advertise_port", "DEFAULT"),
        ("ipa-advertise-protocol", "advertise_protocol", "DEFAULT"),
        ("ipa-tls-min-version", "tls_min_version", "DEFAULT"),
        ("ipa-tls-cipher-suites", "tls_cipher_suites", "DEFAULT"),
        ("ipa-tls-certificate-curve", "tls_certificate_curve", "DEFAULT"),
        ("ipa-enable-auto-tls", "enable_auto_tls", "DEFAULT"),
        ("ipa-ip-lookup-attempts", "ip_lookup_attempts", "DEFAULT"),
        ("ipa-ip-lookup-timeout", "ip_lookup_sleep", "DEFAULT"),
        ("ipa-network-interface", "network_interface", "DEFAULT"),
        ("ipa-lookup-timeout", "lookup_timeout", "DEFAULT"),
        ("ipa-lookup-interval", "lookup_interval", "DEFAULT"),
        ("ipa-lldp-timeout", "lldp_timeout", "DEFAULT"),
        ("ipa-collect-lldp", "collect_lldp", "DEFAULT"),
        ("ipa-inspection-callback-url", "inspection_callback_url", "DEFAULT"),
        ("ipa-inspection-collectors", "inspection_collectors", "DEFAULT"),
        ("ipa-inspection-dhcp-wait-timeout", "inspection_dhcp_wait_timeout", "DEFAULT"),
        ("ipa-inspection-dhcp-all-interfaces", "inspection_dhcp_all_interfaces", "DEFAULT"),
        ("ipa-inspection-benchmarks", "inspection_benchmarks", "DEFAULT"),
        ("ipa-hardware-initialization-delay", "hardware_initialization_delay", "DEFAULT"),
        ("ipa-disk-wait-attempts", "disk_wait_attempts", "DEFAULT"),
        ("ipa-disk-wait-delay", "disk_wait_delay", "DEFAULT"),
        ("ipa-insecure", "insecure", "DEFAULT"),
        ("ipa-ntp-server", "ntp_server", "DEFAULT"),
        ("ipa-agent-token", "agent_token", "DEFAULT"),
        ("ipa-image-download-connection-timeout", "image_download_connection_timeout", "DEFAULT"),
        ("ipa-image-download-connection-retries", "image_download_connection_retries", "DEFAULT"),
        ("ipa-image-download-connection-retry-interval",
         "image_download_connection_retry_interval", "DEFAULT"),
        ("ipa-image-download-max-duration", "image_download_max_duration", "DEFAULT"),
        ("ipa-ironic-api-version", "ironic_api_version", "DEFAULT"),
        ("ipa-enable-vlan-interfaces", "enable_vlan_interfaces", "DEFAULT"),
        ("ipa-multipath", "multipath", "DEFAULT"),
        ("ipa-ignore-bootloader-failure", "ignore_bootloader_failure", "DEFAULT"),
        ("ipa-inject-files-priority", "inject_files_priority", "DEFAULT"),
        ("ipa-guard-special-filesystems", "guard_special_filesystems", "DEFAULT"),
        ("ipa-enable-discard-erase", "enable_discard_erase", "DEFAULT"),
        ("ipa-http-request-timeout", "http_request_timeout", "DEFAULT"),
        ("ipa-standalone", "standalone", "DEFAULT"),
        ("ipa-debug", "debug", "DEFAULT"),
        ("ipa-use-mdns", "use_mdns", "mdns"),
    )
)

# Checked beyond what the option types check.
_EXTRA_CHECKS: dict[str, Callable[[str], str]] = {
    "api_url": _api_urls,
    "inspection_callback_url": _url_or_mdns,
}


def _convert(opt: cfg.Opt, text: str) -> Any:
    value = opt.type(text)
    check = _EXTRA_CHECKS.get(opt.dest)
    if check is not None and value is not None:
        check(value)
    return value


def register_opts(conf: cfg.ConfigOpts, params: Mapping[str, str]) -> None:
    """Register every option on *conf*, with kernel parameters as their defaults.

    Raises :class:`ConfigError` naming the parameter and its value when one
    cannot be parsed.
    """
    groups = _opts()
    by_name = {(group, opt.dest): opt for group, opts in groups.items() for opt in opts}
    for param in PARAMS:
        if param.key not in params:
            continue
        opt = by_name[(param.group, param.opt)]
        text = params[param.key]
        try:
            opt.default = _convert(opt, text)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"kernel parameter {param.key}={text!r} is invalid: {exc}") from None
    for group, opts in groups.items():
        conf.register_opts(opts, group=None if group == "DEFAULT" else group)
    # The four flags of the console script; oslo adds --config-file/--config-dir.
    conf.register_cli_opts([o for o in groups["DEFAULT"]
                            if o.dest in ("standalone", "debug", "api_url")])


def default_config_files() -> list[str]:
    files = [f for f in (f"/etc/{PROG}.conf", f"/etc/{PROG}/{PROG}.conf") if os.path.exists(f)]
    return files


def default_config_dirs() -> list[str]:
    return [d for d in CONFIG_DIRS if os.path.isdir(d)]


def load(params: Mapping[str, str], argv: Sequence[str] | None,
         conf: cfg.ConfigOpts | None = None,
         config_files: Sequence[str] | None = None,
         config_dirs: Sequence[str] | None = None) -> cfg.ConfigOpts:
    """Build the configuration: register, parse CLI and files, then check every value."""
    conf = cfg.ConfigOpts() if conf is None else conf
    register_opts(conf, params)
    try:
        conf(list(argv or []), project=PROG, prog=PROG,
             default_config_files=list(default_config_files() if config_files is None
                                       else config_files),
             default_config_dirs=list(default_config_dirs() if config_dirs is None
                                      else config_dirs),
             validate_default_values=True)
    except cfg.Error as exc:
        raise ConfigError(str(exc).strip()) from None
    check_values(conf)
    return conf


def check_values(conf: cfg.ConfigOpts) -> None:
    """Read every option once, so a bad value in a file is one clear error now."""
    for group_name, opts in _opts().items():
        group = conf if group_name == "DEFAULT" else getattr(conf, group_name)
        where = "" if group_name == "DEFAULT" else f"[{group_name}]"
        for opt in opts:
            try:
                value = getattr(group, opt.dest)
            except (cfg.ConfigFileValueError, ValueError) as exc:
                raise ConfigError(f"option {where}{opt.dest} is invalid: {exc}") from None
            check = _EXTRA_CHECKS.get(opt.dest)
            if check is not None and value:
                try:
                    check(value)
                except ValueError as exc:
                    raise ConfigError(f"option {where}{opt.dest}={value!r} is invalid: "
                                      f"{exc}") from None


def api_urls(conf: cfg.ConfigOpts) -> list[str]:
    """The configured Ironic API URLs, in order ('mdns' stays as it is)."""
    if not conf.api_url:
        return []
    return [u.strip().rstrip("/") for u in conf.api_url.split(",") if u.strip()]


def param_table() -> list[tuple[str, str]]:
    """(kernel parameter, option) rows for the README."""
    return [(p.key, p.opt if p.group == "DEFAULT" else f"[{p.group}]{p.opt}") for p in PARAMS]


def list_opts() -> list[tuple[str | None, list[cfg.Opt]]]:
    """For oslo-config-generator."""
    return [(None if g == "DEFAULT" else g, opts) for g, opts in _opts().items()]



# --- the configuration of this process ----------------------------------------------
#
# Handed over once, by the agent (or the inspection tool) at start; everything
# else, hardware managers included, reads it through current() / params().
# Before a handover (tests, third-party tools) current() is every option at its
# default, parsed from no file.

_current: dict[str, Any] = {"conf": None, "params": {}}


def use(conf: cfg.ConfigOpts, params: Mapping[str, str] | None = None) -> None:
    """Make *conf* (built by :func:`load`) and the kernel parameters the process's."""
    _current["conf"] = conf
    _current["params"] = dict(params or {})


def current() -> cfg.ConfigOpts:
    """The configuration handed over by :func:`use`, or the defaults."""
    conf = _current["conf"]
    if conf is None:
        conf = load({}, [], conf=cfg.ConfigOpts(), config_files=[], config_dirs=[])
        _current["conf"] = conf
    return conf  # type: ignore[no-any-return]


def params() -> dict[str, str]:
    """The kernel parameters handed over by :func:`use` (empty before)."""
    return _current["params"]  # type: ignore[no-any-return]


def forget() -> None:
    """Drop the handed-over configuration (tests)."""
    _current.update(conf=None, params={})
