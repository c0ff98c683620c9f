#!/usr/bin/env python3
"""Differential-test oracle: summarise ONNX files with the official onnx package.

Usage:
    python test/reference/onnx_reference.py FILE...

For each FILE (in argument order) prints one line: json.dumps(obj, sort_keys=True) with

  path, fileBytes, irVersion,
  opsets      {domain: version}; the default domain is "" (also when spelled "ai.onnx"); last wins
  producer    {"name", "version"} ("" when unset)
  metadata    {key: value} from metadata_props; last wins
  inputs      [{name, type, shape}] in graph order, excluding initializer / sparse_initializer names
  outputs     [{name, type, shape}] in graph order
  nodeCount   nodes of the main graph plus every nested subgraph reached through any
              attribute's `g` or `graphs`, at any depth (function bodies not counted)
  ops         {op key: count} over the same nodes; key = op_type for domain "" / "ai.onnx",
              else "domain.op_type"
  initializers {count, parameters, bytes, byType: {type: {count, parameters, bytes}}} over the
              main graph's initializer + sparse_initializer (see tensor_bytes below)
  externalData sorted unique `location`s of main-graph initializers (and sparse initializers'
              values/indices) whose data_location is EXTERNAL
  nodeCountFunctions  total nodes over model.functions bodies (not nested)
  functions   sorted "domain.name" of model-local functions

Type strings: tensor element names (TensorProto.DataType name lower-cased; FLOAT -> float32,
DOUBLE -> float64, UNDEFINED -> undefined, unknown N -> unknown(N)); sequence<T>, map<K,V>,
optional<T>, sparse<T>, opaque<domain.name> (opaque<name> if no domain); no type -> null.
Shapes: only for tensor and sparse tensor types that have a shape field: int for dim_value,
str for dim_param, null for neither; otherwise null.

If a file fails to load: {"path": path, "error": {"message": str(e)}}; exit status 1 if any did.
"""

from __future__ import annotations

import json
import math
import os
import sys

import onnx
from onnx import TensorProto

_DTYPE_NAMES = {v: k.lower() for k, v in TensorProto.DataType.items()}
_DTYPE_NAMES[TensorProto.FLOAT] = "float32"
_DTYPE_NAMES[TensorProto.DOUBLE] = "float64"
_DTYPE_NAMES[TensorProto.UNDEFINED] = "undefined"

# Bits per element, by element-type name. Anything not listed (undefined, unknown(N), string) is 0;
# strings are sized by their content instead.
_BITS = {
    "float32": 32, "uint8": 8, "int8": 8, "uint16": 16, "int16": 16, "int32": 32, "int64": 64,
    "bool": 8, "float16": 16, "float64": 64, "uint32": 32, "uint64": 64, "complex64": 64,
    "complex128": 128, "bfloat16": 16,
    "float8e4m3fn": 8, "float8e4m3fnuz": 8, "float8e5m2": 8, "float8e5m2fnuz": 8, "float8e8m0": 8,
    "uint4": 4, "int4": 4, "float4e2m1": 4,
    "uint2": 2, "int2": 2,
    # onnx 1.23.2 packs float6 raw_data 4 elements into 3 bytes (ceil(6n/8) bytes).
    "float6e2m3": 6, "float6e3m2": 6,
}

_DEFAULT_DOMAINS = ("", "ai.onnx")


def elem_name(t: int) -> str:
    name = _DTYPE_NAMES.get(t)
    return name if name is not None else f"unknown({t})"


def type_str(tp) -> str | None:
    kind = tp.WhichOneof("value")
    if kind == "tensor_type":
        return elem_name(tp.tensor_type.elem_type)
    if kind == "sequence_type":
        inner = type_str(tp.sequence_type.elem_type) if tp.sequence_type.HasField("elem_type") else None
        return f"sequence<{inner}>"
    if kind == "map_type":
        v = type_str(tp.map_type.value_type) if tp.map_type.HasField("value_type") else None
        return f"map<{elem_name(tp.map_type.key_type)},{v}>"
    if kind == "optional_type":
        inner = type_str(tp.optional_type.elem_type) if tp.optional_type.HasField("elem_type") else None
        return f"optional<{inner}>"
    if kind == "sparse_tensor_type":
        return f"sparse<{elem_name(tp.sparse_tensor_type.elem_type)}>"
    if kind == "opaque_type":
        o = tp.opaque_type
        return f"opaque<{o.domain}.{o.name}>" if o.domain else f"opaque<{o.name}>"
    return None


def shape_of(tp):
    kind = tp.WhichOneof("value")
    if kind == "tensor_type":
        t = tp.tensor_type
    elif kind == "sparse_tensor_type":
        t = tp.sparse_tensor_type
    else:
        return None
    if not t.HasField("shape"):
        return None
    out = []
    for d in t.shape.dim:
        which = d.WhichOneof("value")
        if which == "dim_value":
            out.append(d.dim_value)
        elif which == "dim_param":
            out.append(d.dim_param)
        else:
            out.append(None)
    return out


def value_info(vi) -> dict:
    if vi.HasField("type"):
        return {"name": vi.name, "type": type_str(vi.type), "shape": shape_of(vi.type)}
    return {"name": vi.name, "type": None, "shape": None}


def tensor_bytes(t) -> tuple[str, int, int]:
    """(element type name, parameters, bytes) of a dense TensorProto."""
    name = elem_name(t.data_type)
    params = math.prod(t.dims)
    if t.data_type == TensorProto.STRING:
        nbytes = sum(len(s) for s in t.string_data)
    else:
        nbytes = -(-params * _BITS.get(name, 0) // 8)
    return name, params, nbytes


def walk_graphs(root):
    """Yield root and every graph nested in any attribute's g / graphs, iteratively."""
    stack = [root]
    while stack:
        g = stack.pop()
        yield g
        for node in g.node:
            for attr in node.attribute:
                if attr.HasField("g"):
                    stack.append(attr.g)
                stack.extend(attr.graphs)


def op_key(node) -> str:
    return node.op_type if node.domain in _DEFAULT_DOMAINS else f"{node.domain}.{node.op_type}"


def external_location(t):
    if t.data_location != TensorProto.EXTERNAL:
        return None
    loc = None
    for e in t.external_data:
        if e.key == "location":
            loc = e.value  # last wins
    return loc


def summarize(path: str) -> dict:
    m = onnx.load(path, load_external_data=False)
    g = m.graph

    opsets = {}
    for o in m.opset_import:
        opsets["" if o.domain in _DEFAULT_DOMAINS else o.domain] = o.version

    init_names = {t.name for t in g.initializer} | {s.values.name for s in g.sparse_initializer}

    node_count = 0
    ops: dict[str, int] = {}
    for sub in walk_graphs(g):
        for node in sub.node:
            node_count += 1
            k = op_key(node)
            ops[k] = ops.get(k, 0) + 1

    by_type: dict[str, dict] = {}
    total = {"count": 0, "parameters": 0, "bytes": 0}

    def add(type_name: str, params: int, nbytes: int) -> None:
        row = by_type.setdefault(type_name, {"count": 0, "parameters": 0, "bytes": 0})
        for r in (row, total):
            r["count"] += 1
            r["parameters"] += params
            r["bytes"] += nbytes

    locations = set()
    for t in g.initializer:
        add(*tensor_bytes(t))
        loc = external_location(t)
        if loc is not None:
            locations.add(loc)
    for s in g.sparse_initializer:
        vname, _, vbytes = tensor_bytes(s.values)
        _, _, ibytes = tensor_bytes(s.indices)
        add(vname, math.prod(s.dims), vbytes + ibytes)
        for t in (s.values, s.indices):
            loc = external_location(t)
            if loc is not None:
                locations.add(loc)
    total["byType"] = by_type

    return {
        "path": path,
        "fileBytes": os.path.getsize(path),
        "irVersion": m.ir_version,
        "opsets": opsets,
        "producer": {"name": m.producer_name, "version": m.producer_version},
        "metadata": {p.key: p.value for p in m.metadata_props},
        "inputs": [value_info(vi) for vi in g.input if vi.name not in init_names],
        "outputs": [value_info(vi) for vi in g.output],
        "nodeCount": node_count,
        "ops": ops,
        "initializers": total,
        "externalData": sorted(locations),
        "nodeCountFunctions": sum(len(f.node) for f in m.functions),
        "functions": sorted(f"{f.domain}.{f.name}" for f in m.functions),
    }


def main(argv: list[str]) -> int:
    failed = False
    out = sys.stdout
    for path in argv:
        try:
            obj = summarize(path)
        except Exception as e:  # noqa: BLE001 - report every failure as data
            failed = True
            obj = {"path": path, "error": {"message": str(e)}}
        out.write(json.dumps(obj, sort_keys=True) + "\n")
    out.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
