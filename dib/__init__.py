# SPDX-License-Identifier: Apache-2.0
"""The dib image: stock diskimage-builder with the elements in elements/."""
