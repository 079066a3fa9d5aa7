# SPDX-License-Identifier: Apache-2.0
"""An in-process agent with a test extension, for API tests (no server, no Ironic)."""

from __future__ import annotations

import threading

from oslo_config import cfg

from ironic_python_agent import config, errors
from ironic_python_agent.agent import Agent
from ironic_python_agent.extensions import base

TOKEN = "t" * 43


class SampleExtension(base.BaseAgentExtension):
    """Commands that exercise every path of the executor."""

    release = threading.Event()

    @base.sync_command("echo")
    def echo(self, **params):
        return params

    @base.sync_command("text")
    def text(self):
        return "hello"

    @base.sync_command("fail")
    def fail(self):
        raise errors.CleaningError("bad step")

    @base.sync_command("crash")
    def crash(self):
        raise ValueError("boom")

    @base.async_command("slow")
    def slow(self):
        self.release.wait(10)
        return "done"

    @base.async_command("acrash")
    def acrash(self):
        raise ValueError("async boom")

    @base.async_command("mismatch")
    def mismatch(self):
        raise errors.VersionMismatch({"a": "1"}, {"a": "2"})

    def _validate(self, **params):
        if "id" not in params.get("image_info", {}):
            raise errors.InvalidCommandParamsError("Image is missing 'id' field.")

    @base.async_command("validated", validator=_validate)
    def validated(self, image_info):
        return None


def make_agent(token: str | None = TOKEN, **overrides) -> Agent:
    conf = cfg.ConfigOpts()
    config.load({}, [], conf=conf, config_files=[], config_dirs=[])
    for name, value in overrides.items():
        conf.set_override(name, value)
    agent = Agent(conf, {})
    agent._token = token
    base.init_ext_manager(agent)
    base._EXTENSIONS["test"] = SampleExtension(agent=agent)
    agent._hardware_ready.set()
    return agent
