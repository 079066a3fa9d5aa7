# SPDX-License-Identifier: Apache-2.0
"""Wall time of each operator flow on a QEMU node driven by the real Ironic 39.

``./build.sh bench e2e_flows [--no-dib] [--no-build] [--runs=N]``

The same flows as ``tests/e2e/test_qemu_node.py`` (inspect, provide with
automated cleaning, deploy raw, undeploy, deploy qcow2; Ironic with
``require_tls=True``), timed from the guest's start to Ironic's end state, for:
the tinyipa kernel + initramfs, the tinyipa ISO (``-cdrom``, parameters baked in
with ``iso-image-create --append``), and the dib image when ``./build.sh dib``
has produced ``out/dib/lean-ipa.{kernel,initramfs}`` (built here unless
``--no-dib``). ``--no-build`` takes the images already under ``out/`` as they are. TCG, one vCPU, 1 GiB. The raw deploy ends with the agent's
``standby.power_off``, after which Ironic (fake power) polls the power state for
30 s before forcing it off; the other deploys sync and power off out of band.

No upstream column: upstream's ramdisk images cannot be built on this machine
(their elements fetch the agent from opendev.org). Nothing here asserts a timing.
"""

from __future__ import annotations

import statistics
import subprocess
import tempfile
from pathlib import Path

from tests.e2e import ironic, qemu_bmc

TOP = Path(__file__).resolve().parents[2]
CONSOLES = ironic.out_dir() / "bench" / "e2e_flows"
FLOWS = ("inspect", "clean", "deploy-raw", "undeploy", "deploy-qcow2")


def run_flows(media: qemu_bmc.Media, workdir: Path, service: ironic.IronicService,
              client: ironic.IronicClient, server: qemu_bmc.ImageServer,
              made: dict[str, tuple[Path, bytes]]) -> list[qemu_bmc.FlowTiming]:
    """The flows' timings; the consoles are kept under out/bench/e2e_flows/."""
    node = qemu_bmc.QemuNode(f"bench-{media.name}", media, service.api_port, workdir,
                             CONSOLES / workdir.name)
    flows = qemu_bmc.NodeFlows(node, service, client)
    try:
        flows.enroll()
        flows.inspect()
        flows.provide()
        flows.deploy(server, made["raw"][0], "raw")
        flows.undeploy()
        flows.deploy(server, made["qcow2"][0], "qcow2", oob_power_off=True)
    finally:
        node.close()
        flows.retire()
    return flows.timings


def dib_image(build: bool) -> tuple[Path, Path] | None:
    directory = ironic.out_dir() / "dib"
    kernel, initrd = directory / "lean-ipa.kernel", directory / "lean-ipa.initramfs"
    if build and not (kernel.exists() and initrd.exists()):
        subprocess.run([str(TOP / "build.sh"), "dib"], cwd=TOP, check=False)
    return (kernel, initrd) if kernel.exists() and initrd.exists() else None


def fmt(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):6.1f}" + (f" ({min(values):.0f}-{max(values):.0f})"
                                                  if len(values) > 1 else "")


def main(argv: list[str]) -> int:
    runs = next((int(a.split("=", 1)[1]) for a in argv if a.startswith("--runs=")), 1)
    build = "--no-build" not in argv
    if build:
        kernel, initrd = qemu_bmc.tinyipa_image(ironic.out_dir())
    else:
        tiny = ironic.out_dir() / "tinyipa"
        kernel, initrd = tiny / "tinyipa.kernel", tiny / "tinyipa.initramfs"
    medias: list[qemu_bmc.Media] = [qemu_bmc.KernelMedia(kernel, initrd, name="tinyipa"),
                                    qemu_bmc.IsoMedia(kernel, initrd, name="tinyipa-iso")]
    dib = None if "--no-dib" in argv else dib_image(build)
    if dib is not None:
        medias.append(qemu_bmc.KernelMedia(*dib, name="dib"))
    else:
        print("dib image not available (./build.sh dib did not produce it): no dib column")
    results: dict[str, dict[str, list[float]]] = {m.name: {} for m in medias}
    agent_up: dict[str, list[float]] = {m.name: [] for m in medias}
    self_off: dict[str, list[str]] = {m.name: [] for m in medias}
    settings = ironic.IronicSettings(require_tls=True, callback_timeout=600)
    with tempfile.TemporaryDirectory(prefix="lean-ipa-bench-e2e-") as tmp:
        work = Path(tmp)
        served = work / "images"
        served.mkdir()
        made = {f: qemu_bmc.make_whole_disk_image(served, f) for f in ("raw", "qcow2")}
        with ironic.running_ironic(settings, work / "ironic") as (service, client), \
                qemu_bmc.ImageServer(served) as server:
            for _ in range(runs):
                for media in medias:
                    sub = work / f"{media.name}-{len(agent_up[media.name])}"
                    sub.mkdir()
                    for t in run_flows(media, sub, service, client, server, made):
                        results[media.name].setdefault(t.flow, []).append(t.finished)
                        if t.agent_started is not None:
                            agent_up[media.name].append(t.agent_started)
                        if t.flow == "deploy-raw":
                            self_off[media.name].append(
                                "no" if t.powered_itself_off is None
                                else f"{t.powered_itself_off:.0f} s")
    names = [m.name for m in medias]
    print("Seconds from the guest's start to Ironic's end state (TCG, 1 vCPU, 1 GiB; "
          f"median of {runs}):")
    print(f"{'flow':<16}" + "".join(f"{n:>18}" for n in names))
    for flow in FLOWS:
        print(f"{flow:<16}" + "".join(f"{fmt(results[n].get(flow, [])):>18}" for n in names))
    print(f"{'agent started':<16}" + "".join(f"{fmt(agent_up[n]):>18}" for n in names))
    print("Guest powered itself off after standby.power_off (deploy-raw): "
          + ", ".join(f"{n}: {'/'.join(self_off[n])}" for n in names))
    print(f"Serial consoles: {CONSOLES}")
    if "dib" in names:
        for flow in FLOWS:
            small, dib_t = results["tinyipa"].get(flow), results["dib"].get(flow)
            if small and dib_t:
                print(f"ratio dib/tinyipa {flow}: "
                      f"{statistics.median(dib_t) / statistics.median(small):.2f}")
    return 0
