# SPDX-License-Identifier: Apache-2.0
"""What the agent runs inside an image (buildlib/image-programs.toml), per image.

    python3 -m buildlib.programs --write   # refresh the dib element's generated block
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
LIST = HERE / "image-programs.toml"
IMAGES = ("tinyipa", "coreos", "dib")
DIB_YAML = HERE.parent / "elements/lean-ipa-agent/package-installs.yaml"
BEGIN = "# BEGIN the agent's programs, generated from buildlib/image-programs.toml"
END = "# END the agent's programs"


def load(path: Path = LIST) -> dict[str, dict[str, str]]:
    return tomllib.loads(path.read_text())["programs"]


def programs(image: str, table: dict[str, dict[str, str]] | None = None) -> list[str]:
    """The agent's programs *image* carries as real programs (not applets, not left out)."""
    if image not in IMAGES:
        raise ValueError(f"unknown image {image!r} (one of {', '.join(IMAGES)})")
    table = load() if table is None else table
    return [name for name, entry in table.items() if entry.get(image, "install") == "install"]


def packages(image: str, table: dict[str, dict[str, str]] | None = None) -> list[str]:
    """The Debian packages that bring them, in list order, once each."""
    table = load() if table is None else table
    return list(dict.fromkeys(table[name]["package"] for name in programs(image, table)))


def dib_block(skip: set[str], table: dict[str, dict[str, str]] | None = None) -> str:
    """The generated part of package-installs.yaml: the packages not in *skip*
    (those the hand-written part names already, each key once)."""
    lines = [BEGIN, "# (python3 -m buildlib.programs --write; packages named above are not repeated)"]
    lines += [f"{pkg}:" for pkg in packages("dib", table) if pkg not in skip]
    return "\n".join(lines + [END]) + "\n"


def with_dib_block(text: str, table: dict[str, dict[str, str]] | None = None) -> str:
    """*text* (package-installs.yaml) with its generated block replaced (or appended)."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < 0:
        head, tail = text.rstrip("\n") + "\n", ""
    else:
        stop = text.index("\n", end) + 1 if "\n" in text[end:] else len(text)
        head, tail = text[:start], text[stop:]
    named = set(re.findall(r"^([\w.+-]+):", head + tail, re.M))
    return head + dib_block(named, table) + tail


def main(argv: list[str]) -> int:
    if argv != ["--write"]:
        for image in IMAGES:
            print(f"{image}: {' '.join(packages(image))}")
        return 0
    DIB_YAML.write_text(with_dib_block(DIB_YAML.read_text()))
    print(f"wrote {DIB_YAML}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
