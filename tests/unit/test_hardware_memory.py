# SPDX-License-Identifier: Apache-2.0
"""physical_mb without SMBIOS: the kernel's memory block map."""

from ironic_python_agent.hardware import inventory


def test_memory_blocks_count_only_online_ones():
    assert inventory.memory_blocks_mb("8000000", ["1", "1", "0", None, "1\n"]) == 3 * 128
    assert inventory.memory_blocks_mb("", ["1"]) is None
    assert inventory.memory_blocks_mb("zz", ["1"]) is None
    assert inventory.memory_blocks_mb("8000000", ["0"]) is None


def test_memory_falls_back_to_blocks_without_dmi(tmp_path):
    base = tmp_path / "devices/system/memory"
    for i in range(4):
        (base / f"memory{i}").mkdir(parents=True)
        (base / f"memory{i}" / "online").write_text("1\n")
    (base / "block_size_bytes").write_text("8000000\n")
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "meminfo").write_text("MemTotal:        500000 kB\n")
    mem = inventory.collect_memory(None, proc=str(proc), sys=str(tmp_path))
    assert mem.physical_mb == 512 and mem.total == 500000 * 1024
