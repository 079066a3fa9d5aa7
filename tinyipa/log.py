# SPDX-License-Identifier: Apache-2.0
"""The tinyipa builder's log and errors: the builders' shared ones (buildlib.log)."""

from buildlib.log import BuildError, Log, run

__all__ = ["BuildError", "Log", "run"]
