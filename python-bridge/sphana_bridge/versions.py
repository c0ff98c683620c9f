"""`versions` command: the Python version and the installed version of every pinned package."""

from __future__ import annotations

import os
import platform
import re
from importlib import metadata
from typing import Any


def pinned_packages() -> list[str]:
    """Package names pinned in python-bridge/requirements.txt, in file order."""
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "requirements.txt")
    names: list[str] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*==", line)
            if m:
                names.append(m.group(1))
    return names


def run_versions(request: dict[str, Any], emitter) -> dict[str, Any]:
    from sphana_bridge.cli import check_keys

    check_keys(request, set(), "versions")
    packages: dict[str, str] = {}
    for name in pinned_packages():
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = "missing"
    return {"python": platform.python_version(), "packages": packages}
