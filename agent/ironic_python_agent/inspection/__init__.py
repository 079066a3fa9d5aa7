# SPDX-License-Identifier: Apache-2.0
"""Inspection: the data the agent collects and posts to an inspection callback."""
