"""External-data locations are untrusted: validate every one before anything is opened.

The bridge does this itself, whatever the TypeScript side decided (defence in depth). A
location must be a non-empty relative path without NUL, without a ``..`` component and not
absolute (POSIX or Windows spelling); its real path (symlinks followed) must lie inside the
model's folder and be a regular file. The rules are those of onnx's own loader
(``onnx.external_data_helper`` -> ``onnx.checker._open_external_data``), which the tests use
as the reference.
"""

from __future__ import annotations

import os
import re
import stat
from typing import Iterator

import onnx
from onnx import TensorProto

from sphana_bridge.protocol import InputError

ERROR_CODE = "E_UNSAFE_EXTERNAL_DATA"


def unsafe_reason(location: str) -> str | None:
    """Why a location string is unsafe on its face, or None."""
    if not isinstance(location, str) or location == "":
        return "empty location"
    if "\0" in location:
        return "location contains a NUL byte"
    if os.path.isabs(location) or location.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", location):
        return "absolute path"
    if ".." in re.split(r"[\\/]", location):
        return "path contains '..'"
    return None


def _refuse(location: str, reason: str, tensor: str) -> InputError:
    return InputError(
        f"external data location {location!r} of tensor {tensor!r} is unsafe: {reason}",
        {"code": ERROR_CODE, "location": location, "tensor": tensor, "reason": reason},
    )


def resolve_location(base_dir: str, location: str, tensor: str = "") -> str:
    """The real path of ``location`` inside ``base_dir``; InputError (details.code =
    E_UNSAFE_EXTERNAL_DATA) if it is unsafe, missing or not a regular file. Only stat()s."""
    reason = unsafe_reason(location)
    if reason:
        raise _refuse(location, reason, tensor)
    base = os.path.realpath(base_dir)
    real = os.path.realpath(os.path.join(base, location))
    if real == base or os.path.commonpath([base, real]) != base:
        raise _refuse(location, "resolves outside the model folder (symlink)", tensor)
    try:
        st = os.stat(real)
    except OSError:
        raise InputError(
            f"external data file referenced by the model is missing: {real} (tensor {tensor!r})",
            {"code": "E_EXTERNAL_DATA_MISSING", "location": location, "tensor": tensor},
        ) from None
    if not stat.S_ISREG(st.st_mode):
        raise _refuse(location, "not a regular file", tensor)
    return real


def every_tensor(model: onnx.ModelProto) -> Iterator[TensorProto]:
    """Every TensorProto in the model, at any depth: initializers, sparse parts, attribute
    tensors, subgraphs, function bodies and training-info graphs (a superset of what onnx and
    onnxruntime load external data for)."""

    def sparse(s: onnx.SparseTensorProto) -> Iterator[TensorProto]:
        yield s.values
        yield s.indices

    def nodes(ns) -> Iterator[TensorProto]:
        for n in ns:
            for a in n.attribute:
                if a.HasField("t"):
                    yield a.t
                yield from a.tensors
                if a.HasField("sparse_tensor"):
                    yield from sparse(a.sparse_tensor)
                for s in a.sparse_tensors:
                    yield from sparse(s)
                if a.HasField("g"):
                    yield from graph(a.g)
                for g in a.graphs:
                    yield from graph(g)

    def graph(g: onnx.GraphProto) -> Iterator[TensorProto]:
        yield from g.initializer
        for s in g.sparse_initializer:
            yield from sparse(s)
        yield from nodes(g.node)

    yield from graph(model.graph)
    for f in model.functions:
        yield from nodes(f.node)
    for t in model.training_info:
        yield from graph(t.initialization)
        yield from graph(t.algorithm)


def location_of(t: TensorProto) -> str | None:
    """The tensor's ``location`` entry (the last one wins, as in onnx), or None."""
    loc = None
    for e in t.external_data:
        if e.key == "location":
            loc = e.value
    return loc


def check_model_locations(model: onnx.ModelProto, base_dir: str) -> None:
    """Validates the location of every tensor that names one, external or not (stricter than
    onnx, which looks only at data_location == EXTERNAL)."""
    for t in every_tensor(model):
        loc = location_of(t)
        if loc is not None or t.data_location == TensorProto.EXTERNAL:
            resolve_location(base_dir, loc or "", t.name)
