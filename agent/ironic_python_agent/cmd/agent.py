# SPDX-License-Identifier: Apache-2.0
"""``ironic-python-agent``: the console script."""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Sequence

EXIT_CONFIG = 2
EXIT_FATAL = 1


def setup_logging(debug: bool, log_file: str | None = None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        handlers.append(logging.FileHandler(log_file))
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, handlers=handlers,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    for noisy in ("urllib3", "werkzeug", "pyudev", "stevedore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run(argv: Sequence[str] | None = None) -> int:
    from oslo_config import cfg

    from ironic_python_agent import cmdline, config, errors
    from ironic_python_agent.agent import Agent

    setup_logging(debug=False)
    log = logging.getLogger("ironic_python_agent")
    params = cmdline.load_params(extra=cmdline.params_from_env())
    if params.get("boot_method") == "vmedia":
        from ironic_python_agent import vmedia

        try:
            vmedia.copy_config()
        except errors.RESTError as exc:
            log.error("%s", exc)
    try:
        conf = config.load(params, sys.argv[1:] if argv is None else argv, conf=cfg.CONF)
    except config.ConfigError as exc:
        log.error("Configuration error: %s", exc)
        return EXIT_CONFIG
    setup_logging(conf.debug, conf.log_file)

    agent = Agent(conf, params)

    def on_signal(signum: int, frame: object) -> None:
        log.info("Signal %s: stopping", signum)
        agent.stop_serving(delay=0)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        agent.run()
    except errors.RESTError as exc:
        log.error("%s", exc)
        return EXIT_FATAL
    except config.ConfigError as exc:
        log.error("Configuration error: %s", exc)
        return EXIT_CONFIG
    return 0


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
