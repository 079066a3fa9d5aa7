# SPDX-License-Identifier: Apache-2.0
"""Fixtures shared by every tier of the suite."""
