# SPDX-License-Identifier: Apache-2.0
"""The ironic-*.json network_data samples the unit tests translate are what Ironic 39's
own code writes: tests/samples/network_data/generate.py regenerates them in the real
Ironic's venv (ironic.common.neutron.get_neutron_port_data with a Neutron client that
answers with fixed ports) and the result must equal the files in the tree."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.e2e.ironic import IRONIC_REQUIREMENT, ensure_venv, out_dir

pytestmark = pytest.mark.e2e

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "network_data"


def test_samples_are_what_ironic_writes(tmp_path: Path) -> None:
    python = ensure_venv(out_dir() / "venv-ironic", IRONIC_REQUIREMENT) / "python"
    done = subprocess.run([str(python), str(SAMPLES / "generate.py"), str(tmp_path)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    for name in ("ironic-port.json", "ironic-portgroup.json"):
        assert json.loads((tmp_path / name).read_text()) == \
            json.loads((SAMPLES / name).read_text()), name
