"""`reference-generate`: PyTorch's greedy generation on a Hugging Face folder, the reference
that an exported ONNX model's greedy tokens are compared with (tests, `sphana verify` style checks)."""

from __future__ import annotations

import time
from typing import Any

from sphana_bridge.protocol import BadRequest

MAX_NEW_TOKENS = 256


def reference_generate(model_dir: str, prompt: str | None, prompt_ids: list[int] | None, max_new_tokens: int, emit) -> dict[str, Any]:
    import torch
    from transformers import AutoTokenizer

    from sphana_bridge.export_model import load_model

    start = time.monotonic()
    emit("load", None, f"loading {model_dir}")
    model = load_model(model_dir)  # fp32, eager attention: as the export traces it
    tokenized = None
    if prompt is not None:
        tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        tokenized = tokenizer(prompt).input_ids
    ids = prompt_ids if prompt_ids is not None else tokenized
    vocab = model.config.vocab_size
    if not ids or any(not (0 <= i < vocab) for i in ids):
        raise BadRequest(f"prompt ids must be a non-empty list of ids in [0, {vocab})", {"field": "promptIds"})
    emit("generate", None, f"greedy, {max_new_tokens} new tokens")
    with torch.no_grad():
        out = model.generate(
            torch.tensor([ids], dtype=torch.long), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
            temperature=None, top_p=None, top_k=None, pad_token_id=model.generation_config.pad_token_id,
        )
    tokens = out[0, len(ids):].tolist()
    eos = model.generation_config.eos_token_id
    # generate stops after the first EOS (kept) and pads a finished sequence: report up to it.
    eos_ids = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
    for i, t in enumerate(tokens):
        if t in eos_ids:
            tokens = tokens[: i + 1]
            break
    return {"promptIds": ids, "tokenizedPrompt": tokenized, "tokens": tokens, "eosTokenIds": sorted(eos_ids), "seconds": round(time.monotonic() - start, 3)}


def run_reference_generate(request: dict[str, Any], emitter) -> dict[str, Any]:
    from sphana_bridge.cli import check_keys

    check_keys(request, {"modelDir", "prompt", "promptIds", "maxNewTokens"}, "reference-generate")
    model_dir = request.get("modelDir")
    if not isinstance(model_dir, str) or not model_dir:
        raise BadRequest("request field 'modelDir' must be a Hugging Face folder", {"field": "modelDir"})
    prompt, prompt_ids = request.get("prompt"), request.get("promptIds")
    if (prompt is None) == (prompt_ids is None):
        raise BadRequest("give exactly one of 'prompt' (text) and 'promptIds'", {"field": "prompt"})
    if prompt is not None and not isinstance(prompt, str):
        raise BadRequest("request field 'prompt' must be a string", {"field": "prompt"})
    if prompt_ids is not None and (not isinstance(prompt_ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in prompt_ids)):
        raise BadRequest("request field 'promptIds' must be a list of integers", {"field": "promptIds"})
    n = request.get("maxNewTokens", 12)
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_NEW_TOKENS:
        raise BadRequest(f"request field 'maxNewTokens' must be an integer in [1, {MAX_NEW_TOKENS}]", {"field": "maxNewTokens"})
    return reference_generate(model_dir, prompt, prompt_ids, n, emitter.progress)
