"""Tiny configs for the export tests (shapes of the real presets, sizes of a unit test).

The configs and their architecture facts live in tiny_configs.json: the facts are what
TypeScript's family files resolve for each config (test/models/facts.test.ts checks that
they still are, and rewrites the file with SPHANA_WRITE_TINY_CONFIGS=1).
"""

from __future__ import annotations

import json
import os

with open(os.path.join(os.path.dirname(__file__), "tiny_configs.json"), encoding="utf-8") as _f:
    _ENTRIES = json.load(_f)

TINY = {name: e["config"] for name, e in _ENTRIES.items()}
FACTS = {name: e["architecture"] for name, e in _ENTRIES.items()}

# Long enough to pass Gemma-2's window (8) in the prefill already; 4 decode steps more.
PROMPT = [1, 17, 301, 5, 88, 460, 23, 9, 140, 77, 250, 3, 499, 64]
DECODE_STEPS = 4
