# SPDX-License-Identifier: Apache-2.0
"""What tinyipa prunes from Python does not break the imports vendor managers make.

Upstream's managers and nearly every vendor's do ``from oslo_log import log`` and
``from oslo_concurrency import processutils``; oslo.log, oslo.utils,
oslo.serialization and oslo.concurrency import parts of the standard library
and of their requirements at load time. A child Python refuses every module
that ``python_prune`` or ``site_prune`` in tinyipa.toml drops, then makes those
imports: a prune entry that takes away something they load fails here, not
in a booted image.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

TOML = Path(__file__).resolve().parents[2] / "tinyipa" / "tinyipa.toml"

IMPORTS = """
from oslo_log import log
log.getLogger("vendor").info("x")
from oslo_utils import fileutils
from oslo_concurrency import processutils
from oslo_config import cfg
import yaml
import ironic_python_agent.hardware_managers.nvidia.nvidia_fw_update
"""
# Built into Debian's python3.11 (the image's), so lib-dynload/ has no file to prune.
DEBIAN_BUILTIN = {"pyexpat"}


def pruned_modules(config: dict) -> list[str]:
    """Module names the image lacks, from the prune lists' paths (data files skipped)."""
    names = []
    for entry in config["python_prune"] + config["site_prune"]:
        if "{" in entry or entry.endswith((".pth", ".txt", ".idx", ".xml", ".c")):
            continue
        path = entry.removeprefix("lib-dynload/")
        head, _, last = path.rpartition("/")
        if "*" in last:  # an extension module: the name before its ABI tag
            last = last.split(".", 1)[0]
            if "*" in last:
                continue  # compiled copies of pure-Python modules that stay
        name = ".".join(filter(None, [*head.split("/"), last.removesuffix(".py")]))
        if "-" not in name and "*" not in name and name not in DEBIAN_BUILTIN:
            names.append(name)
    return names


def test_prune_list_names_modules() -> None:
    names = pruned_modules(tomllib.loads(TOML.read_text()))
    assert {"xml.dom", "xmlrpc.server", "_decimal", "yaml._yaml", "wrapt._wrappers",
            "psutil", "msgpack", "email.mime"} <= set(names)
    assert not {"xml", "xml.parsers", "xmlrpc", "decimal", "zoneinfo", "debtcollector",
                "wrapt", "multiprocessing", "multiprocessing.context"} & set(names)


def test_vendor_manager_imports_survive_the_prune() -> None:
    blocked = pruned_modules(tomllib.loads(TOML.read_text()))
    child = textwrap.dedent(f"""
        import importlib.abc, sys
        BLOCKED = {blocked!r}
        class Pruned(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if any(name == b or name.startswith(b + ".") for b in BLOCKED):
                    raise ModuleNotFoundError(f"pruned from tinyipa: {{name}}", name=name)
        sys.meta_path.insert(0, Pruned())
    """) + IMPORTS
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr.strip().splitlines()[-1:]
