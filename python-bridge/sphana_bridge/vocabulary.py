"""The words the bridge's requests share with sphana's TypeScript side, and their defaults.

The same table lives in src/vocabulary.ts; test/python/bridge-contract.test.ts fails when the
two differ. This module imports nothing heavy (no torch, no onnx).
"""

from __future__ import annotations

QUANT_PRECISIONS = ("int8", "int4")
STRATEGIES = ("direct", "external-data", "embedding-split")  # the fallback order of `auto`
INT8_SCHEMES = ("weight-only", "dynamic")
INT8_ENGINES = ("streaming", "ort")
INT4_ALGORITHMS = ("rtn", "rtn-float-zp", "hqq")
ACCURACY_LEVELS = (0, 1, 2, 3, 4)
TABLE_BITS = (8, 4)  # bits of the LM head / token embedding kept apart
EXPORTERS = ("dynamo", "torchscript")

QUANT_DEFAULTS = {
    "int8Scheme": "weight-only",
    "int8Engine": "streaming",
    "algorithm": "rtn",
    "accuracyLevel": 4,
    "blockSize": 32,
    "embeddingBits": 8,
    "symmetric": False,
    "perChannel": False,
}
EXPORT_DEFAULTS = {"exporter": "dynamo"}


def shared_vocabulary() -> dict:
    """The vocabulary as the contract test compares it with src/vocabulary.ts (SHARED_VOCABULARY)."""
    return {
        "quantPrecisions": list(QUANT_PRECISIONS),
        "strategies": list(STRATEGIES),
        "int8Schemes": list(INT8_SCHEMES),
        "int8Engines": list(INT8_ENGINES),
        "int4Algorithms": list(INT4_ALGORITHMS),
        "accuracyLevels": list(ACCURACY_LEVELS),
        "tableBits": list(TABLE_BITS),
        "exporters": list(EXPORTERS),
        "quantDefaults": dict(QUANT_DEFAULTS),
        "exportDefaults": dict(EXPORT_DEFAULTS),
    }
