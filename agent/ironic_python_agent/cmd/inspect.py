# SPDX-License-Identifier: Apache-2.0
"""``ironic-collect-introspection-data``: post inspection data from a running system.

Meant for instances in ACTIVE state whose inspector accepts active
introspection. One-shot by default (exit 0 when the data was delivered, 1
when not, 2 on bad options); with ``--introspection_daemon`` it keeps posting
every ``--introspection_daemon_post_interval`` seconds (jittered, and backing
off after errors). The kernel command line is not read: on an instance it
carries no agent parameters.
"""

from __future__ import annotations

import logging
import random
import sys
import time
from collections.abc import Callable, Sequence

from oslo_config import cfg

from ironic_python_agent import config, errors, inspector

LOG = logging.getLogger("ironic_python_agent.cmd.inspect")

PROG = "ironic-collect-introspection-data"
CLI_OPTIONS = ("inspection_callback_url", "inspection_collectors", "introspection_daemon",
               "introspection_daemon_post_interval", "insecure", "cafile", "certfile",
               "keyfile", "lldp_timeout", "http_request_timeout")
EXTRA_OPTS = [
    cfg.IntOpt("inspection_post_attempts", default=inspector.Retry().attempts, min=1,
               help="How many times to try the post before giving up (lean-ipa only)."),
]
JITTER = (0.7, 1.2)
BACKOFF = 2.7
MAX_INTERVAL_FACTOR = 4


def next_interval(current: float, base: float, ok: bool) -> float:
    """The daemon's interval after a post: back to *base* on success, x2.7 (capped) on error."""
    if ok:
        return min(current, base)
    return min(current * BACKOFF, base * MAX_INTERVAL_FACTOR)


def load_conf(argv: Sequence[str]) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    config.register_opts(conf, {})
    # The same options again as CLI flags: oslo accepts an equal option twice.
    conf.register_cli_opts([opt for group, opts in config.list_opts() if group is None
                            for opt in opts if opt.dest in CLI_OPTIONS])
    conf.register_cli_opts(EXTRA_OPTS)
    try:
        # The agent's config files and directories, under this script's name.
        conf(list(argv), project=config.PROG, prog=PROG,
             default_config_files=config.default_config_files(),
             default_config_dirs=config.default_config_dirs(),
             validate_default_values=True)
    except cfg.Error as exc:
        raise config.ConfigError(str(exc).strip()) from None
    config.check_values(conf)
    return conf


def post_once(conf: cfg.ConfigOpts, retry: inspector.Retry) -> bool:
    try:
        outcome = inspector.run_inspection(conf, {}, retry=retry)
    except errors.InspectionError as exc:
        LOG.error("Inspection data was not delivered: %s", exc)
        return False
    if outcome.error:
        LOG.warning("Inspection data was posted with errors:\n%s", outcome.error)
    LOG.info("Inspection data delivered to %s%s", outcome.url,
             f" for node {outcome.node_uuid}" if outcome.node_uuid else "")
    return True


def run_daemon(conf: cfg.ConfigOpts, retry: inspector.Retry,
               sleep: Callable[[float], None] = time.sleep) -> None:
    base = float(conf.introspection_daemon_post_interval)
    interval = base
    while True:
        sleep(interval * random.uniform(*JITTER))
        interval = next_interval(interval, base, post_once(conf, retry))


def main(argv: Sequence[str]) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        conf = load_conf(argv)
    except config.ConfigError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    if conf.debug:
        logging.getLogger().setLevel(logging.DEBUG)
    if not conf.inspection_callback_url and conf.mdns.use_mdns:
        conf.set_override("inspection_callback_url", "mdns")
    if not conf.inspection_callback_url:
        print(f"{PROG}: no --inspection_callback_url given (a URL, or 'mdns')", file=sys.stderr)
        return 2
    retry = inspector.Retry(attempts=conf.inspection_post_attempts)
    ok = post_once(conf, retry)
    if not conf.introspection_daemon:
        if not ok:
            print(f"{PROG}: could not post the inspection data to "
                  f"{conf.inspection_callback_url} (see the errors above)", file=sys.stderr)
        return 0 if ok else 1
    run_daemon(conf, retry)
    return 0


def run() -> None:
    sys.exit(main(sys.argv[1:]))


if __name__ == "__main__":
    run()
