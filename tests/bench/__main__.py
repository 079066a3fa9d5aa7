# SPDX-License-Identifier: Apache-2.0
"""``./build.sh bench [NAME ...]``: run the benchmarks, printing figures and ratios.

Each module in this folder with a ``main(argv) -> int`` is one benchmark;
with no names, all of them run in turn. Nothing here asserts a timing.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
import traceback
from pathlib import Path


def available() -> list[str]:
    here = Path(__file__).parent
    return sorted(m.name for m in pkgutil.iter_modules([str(here)])
                  if not m.name.startswith("_") and m.name != "common")


def main(argv: list[str]) -> int:
    names = [a for a in argv if not a.startswith("-")] or available()
    unknown = [n for n in names if n not in available()]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; available: {', '.join(available())}")
        return 2
    failed = []
    for name in names:
        print(f"\n=== bench: {name} ===", flush=True)
        start = time.monotonic()
        try:
            module = importlib.import_module(f"tests.bench.{name}")
            rc = module.main([a for a in argv if a.startswith("-")])
        except Exception:  # noqa: BLE001 - one broken benchmark must not hide the others
            traceback.print_exc()
            rc = 1
        print(f"=== {name}: {'ok' if rc == 0 else f'failed ({rc})'} in "
              f"{time.monotonic() - start:.0f} s ===", flush=True)
        if rc:
            failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
