"""`versions` command."""

from __future__ import annotations

import platform
from typing import Any


def run_versions(request: dict[str, Any], emitter) -> dict[str, Any]:
    from sphana_bridge.cli import check_keys

    check_keys(request, set(), "versions")
    import numpy
    import onnx
    import onnxruntime

    return {
        "python": platform.python_version(),
        "packages": {
            "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
            "numpy": numpy.__version__,
        },
    }
