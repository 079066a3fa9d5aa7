# SPDX-License-Identifier: Apache-2.0
"""What every image builder shares: running commands and logging (log), the
host packages a target needs (host), the build vocabulary (options), and the
outputs in out/<target>/ (outputs)."""
