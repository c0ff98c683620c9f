"""Export by stamping: trace ONE decoder layer per layer type, then copy its graph once per layer.

torch.export + decompositions + translation + onnxscript's optimize cost ~4 s per decoder layer
(bench/results/export-profile.md) and every layer of a type traces to the same graph. So:

1. ``template_model``: the real model with its layer list cut down to the first layer of each
   distinct layer type (``config.layer_types`` when the config has it, plus the layer's parameter
   names and shapes), in order: k = 1 for Llama / Qwen2 / SmolLM2, 2 for Gemma-2. The template
   layers are COPIES whose parameters are random (seeded), so the constant folder and the
   initializer de-duplication cannot depend on a checkpoint's values (two all-ones norms of one
   layer would otherwise be merged into one initializer). Embedding, final norm and head are the
   real modules. It is exported with the bridge's own wrapper, names and dynamic shapes.
2. ``record_recipes`` runs on the UNoptimized graph: for every value computable from initializers
   alone that reads a layer parameter, the nodes computing it (e.g. ``Transpose(q_proj.weight)``).
   onnxscript's constant folder names a folded initializer after the value it replaces, so after
   the optimize pass each folded per-layer initializer has a recipe; the recipe is re-run on the
   template's own parameters and must reproduce the folded tensor bit for bit.
3. ``Template``: per template layer j, the nodes the exporter scoped to ``<layers>.<j>`` (node
   metadata), split into the nodes that depend on the layer (its residual input, its past key /
   value, its parameters) and the rest (shape arithmetic and rotary broadcasts that depend only on
   shared values: they are kept once). The boundary is checked: a layer reads only the residual
   stream, its own past / parameters and shared values, and hands on only its residual output and
   its present key / value; anything else raises ``NotSeparable``.
4. ``stamp``: the layer-dependent nodes of every template layer are replaced by one copy per real
   layer (renamed ``layers.<i>/...``), chained through the residual stream, reading
   ``past_key_values.<i>.*`` and producing ``present.<i>.*``. Parameters are bound to layer i's own
   torch tensors (no copy); folded ones (transposed weights) are ``LazyTensor``s computed while the
   file is written, one at a time, so no second copy of all weights is ever held.

The caller (export_model) then checks the I/O contract and runs the unchanged parity gate against
PyTorch on the whole model; on ``NotSeparable``, any stamping error or a failed gate it falls back
to the full trace and records why. Nothing here knows a model type.

5. ``stamp_fused`` (``--optimize ort``): onnxruntime's fusions without fusing every layer. The
   traced template is stamped (random, distinct weights: no initializer de-duplication) into a
   small model of layer 0 plus the first later layer of each type, which onnxscript's
   ``optimize_for_ort`` fuses; in the fused graph a later layer starts with the
   SkipSimplifiedLayerNormalization that adds the previous layer's output to the residual, so a
   fused layer reads and hands on two residual values (the MLP output and the residual sum), told
   apart by how the next layer reads them (``_slot_key``). That fused graph is analysed like a
   traced template and stamped with the real weights: real layer 0 from its layer 0, every other
   layer from the later layer of its type. The fused node's scope metadata is onnxscript's merge of
   the matched nodes' (the norm's scope for a skip-norm), which is what ``analyse`` reads.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import re
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

INNER = "inner."  # the wrapper's attribute holding the Hugging Face model (make_wrapper)
SCOPES_KEY = "pkg.torch.onnx.name_scopes"
TEMPLATE_SEED = 20261202


class NotSeparable(Exception):
    """The template's layer graph cannot be stamped (the message says why)."""


# --------------------------------------------------------------------------------------
# 1. which layers to trace
# --------------------------------------------------------------------------------------


@dataclass
class Plan:
    path: str  # module path of the decoder layer list, e.g. "model.layers"
    num_layers: int
    type_of: list[int]  # real layer index -> template index
    templates: list[int]  # template index -> real layer index (first layer of that type)
    type_names: list[str]  # template index -> layer type ("full_attention", ...)

    @property
    def prefix(self) -> str:
        return f"{INNER}{self.path}."


def layer_list(model):
    """(path, ModuleList) of the decoder layers: the one ModuleList with num_hidden_layers entries."""
    import torch

    n = model.config.num_hidden_layers
    found = [(name, m) for name, m in model.named_modules() if isinstance(m, torch.nn.ModuleList) and len(m) == n and name]
    if len(found) != 1:
        raise NotSeparable(f"expected one list of {n} decoder layers, found {[name for name, _ in found]}")
    return found[0]


def plan_layers(model) -> Plan:
    path, layers = layer_list(model)
    cfg = model.config
    types = list(getattr(cfg, "layer_types", None) or [])
    if types and len(types) != len(layers):
        raise NotSeparable(f"config.layer_types has {len(types)} entries for {len(layers)} layers")
    keys: dict[Any, int] = {}
    type_of, templates, names = [], [], []
    for i, layer in enumerate(layers):
        signature = (
            type(layer).__name__,
            types[i] if types else None,
            tuple((n, tuple(p.shape), str(p.dtype)) for n, p in layer.named_parameters()),
            tuple((n, tuple(b.shape), str(b.dtype)) for n, b in layer.named_buffers()),
        )
        if signature not in keys:
            keys[signature] = len(templates)
            templates.append(i)
            names.append(types[i] if types else "layer")
        type_of.append(keys[signature])
    return Plan(path, len(layers), type_of, templates, names)


@contextlib.contextmanager
def template_model(model, plan: Plan) -> Iterator[Any]:
    """The model with only the template layers (random-weight copies), restored on exit."""
    import torch

    cfg = model.config
    parent_path, _, attr = plan.path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    real_layers = getattr(parent, attr)
    saved = {"num_hidden_layers": cfg.num_hidden_layers}
    if getattr(cfg, "layer_types", None):
        saved["layer_types"] = cfg.layer_types
    g = torch.Generator().manual_seed(TEMPLATE_SEED)
    copies = []
    for j, i in enumerate(plan.templates):
        layer = copy.deepcopy(real_layers[i])
        with torch.no_grad():
            for p in list(layer.parameters()) + list(layer.buffers()):
                if p.is_floating_point():
                    p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float32).to(p.dtype) * 0.05 + 0.5)
        for m in layer.modules():
            if isinstance(getattr(m, "layer_idx", None), int):
                m.layer_idx = j
        copies.append(layer)
    try:
        setattr(parent, attr, torch.nn.ModuleList(copies))
        cfg.num_hidden_layers = len(copies)
        if "layer_types" in saved:
            cfg.layer_types = [saved["layer_types"][i] for i in plan.templates]
        yield model
    finally:
        setattr(parent, attr, real_layers)
        for k, v in saved.items():
            setattr(cfg, k, v)


# --------------------------------------------------------------------------------------
# 2. recipes of folded per-layer initializers (recorded before onnxscript's optimize pass)
# --------------------------------------------------------------------------------------


@dataclass
class Step:
    domain: str
    op_type: str
    version: int
    attrs: dict[str, Any]
    inputs: list[str | None]
    outputs: list[str]


@dataclass
class Recipe:
    steps: list[Step]
    params: list[str]  # initializer names (layer parameters) the recipe reads
    consts: dict[str, Any]  # other initializers it reads (small constants), name -> numpy


def _layer_of(name: str, prefix: str) -> int | None:
    if not name.startswith(prefix):
        return None
    head = name[len(prefix):].split(".", 1)[0]
    return int(head) if head.isdigit() else None


def record_recipes(model, prefix: str) -> dict[str, Recipe]:
    """value name -> Recipe, for values computable from initializers alone that read a layer parameter."""
    import onnx_ir as ir

    graph = model.graph
    opsets = dict(model.opset_imports)
    inits = graph.initializers
    deps: dict[str, set[str]] = {}  # const value -> the layer parameters it reads
    step_of: dict[str, Step] = {}
    for name in inits:
        if _layer_of(name, prefix) is not None:
            deps[name] = {name}
    const = set(inits)
    for node in graph:
        ins = [v.name if v is not None else None for v in node.inputs]
        if any(n is not None and n not in const for n in ins) or any(a.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS) for a in node.attributes.values()):
            continue
        outs = [v.name for v in node.outputs]
        const.update(outs)
        reads = set().union(*(deps.get(n, set()) for n in ins if n is not None))
        attrs = {k: (ir.serde.serialize_tensor(a.value) if a.type == ir.AttributeType.TENSOR else a.value) for k, a in node.attributes.items()}
        step = Step(node.domain, node.op_type, node.version or opsets.get(node.domain, opsets.get("", 18)), attrs, ins, outs)
        for o in outs:
            deps[o] = reads
            step_of[o] = step
    recipes: dict[str, Recipe] = {}
    for name, step in step_of.items():
        if not deps[name]:
            continue
        steps: list[Step] = []
        seen: set[int] = set()
        leaves: dict[str, None] = {}

        def visit(n: str) -> None:
            s = step_of.get(n)
            if s is None:
                leaves[n] = None
                return
            if id(s) in seen:
                return
            for i in s.inputs:
                if i is not None:
                    visit(i)
            seen.add(id(s))
            steps.append(s)

        visit(name)
        params = [n for n in leaves if _layer_of(n, prefix) is not None]
        consts = {n: inits[n].const_value.numpy() for n in leaves if n not in params}
        recipes[name] = Recipe(steps, params, consts)
    return recipes


def run_recipe(recipe: Recipe, name: str, params: dict[str, Any]):
    """Evaluate a recipe with onnx's reference ops (what onnxscript's constant folder uses)."""
    import numpy as np
    import onnx.reference.ops as ref_ops

    env: dict[str, Any] = {**recipe.consts, **params}
    for s in recipe.steps:
        impl = ref_ops.load_op(s.domain, s.op_type, s.version)
        out = impl.eval(*[env[i] if i is not None else None for i in s.inputs], **s.attrs)
        outs = out if isinstance(out, (tuple, list)) else (out,)
        for o, v in zip(s.outputs, outs):
            env[o] = np.asarray(v)
    return env[name]


# --------------------------------------------------------------------------------------
# 3. the template layers in the optimized graph
# --------------------------------------------------------------------------------------


@dataclass
class LayerGraph:
    index: int  # template index j
    nodes: list[Any] = field(default_factory=list)  # layer-dependent nodes, topological order
    # The residual stream in and out, one value unfused; fused, a layer hands on two (its MLP output
    # and the residual sum, which the next layer's SkipSimplifiedLayerNormalization adds), in slot
    # order (``_slot_key``), so slot s of one layer's output feeds slot s of the next one's input.
    residual_in: list[Any] = field(default_factory=list)
    residual_out: list[Any] = field(default_factory=list)
    past: list[Any] = field(default_factory=list)  # [key, value] graph inputs
    present: list[Any] = field(default_factory=list)  # [key, value] graph outputs
    params: dict[str, Any] = field(default_factory=dict)  # initializer name -> its Value (direct layer parameters)
    folded: dict[str, Any] = field(default_factory=dict)  # initializer name -> Value (folded from layer parameters)
    # folded initializer name -> (its recipe's name, the template layer whose parameter names the recipe reads)
    folded_from: dict[str, tuple[str, int]] = field(default_factory=dict)


def _scope(node, prefix: str) -> int | None:
    raw = node.metadata_props.get(SCOPES_KEY)
    if not raw:
        return None
    try:
        scopes = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return None
    pattern = re.compile(re.escape(prefix) + r"(\d+)$")
    for s in scopes if isinstance(scopes, list) else ():
        m = pattern.match(str(s))
        if m:
            return int(m.group(1))
    return None


def _is_hidden(v, hidden: int) -> bool:
    shape = v.shape
    return shape is not None and len(shape) == 3 and shape[2] == hidden and v.dtype is not None and v.dtype.is_floating_point()


MAX_RESIDUAL_VALUES = 2


def _slot_key(v, readers) -> tuple:
    """What a residual value is to the nodes that read it: (domain, op_type, input index) of each
    use by ``readers``. Unfused there is one value; fused the MLP output and the residual sum are
    inputs 0 and 1 of the next SkipSimplifiedLayerNormalization, whichever layer reads them."""
    ids = {id(n) for n in readers}
    return tuple(sorted((u.node.domain, u.node.op_type, u.idx) for u in v.uses() if id(u.node) in ids))


def _check_slots(layers: list[LayerGraph], nodes, layer_of_node: dict[int, int]) -> None:
    """Every layer hands on the same slots, and every layer that reads more than one value reads
    them as the others are read (so any layer's output may feed any later layer of any type)."""
    def keys(vals, readers):
        return [_slot_key(v, readers) for v in vals]

    outs = []
    for lg in layers:
        downstream = [n for n in nodes if layer_of_node.get(id(n)) != lg.index]
        k = keys(lg.residual_out, downstream)
        if len(set(k)) != len(k):
            raise NotSeparable(f"template layer {lg.index}'s residual outputs are not told apart by their readers: {k}")
        outs.append(k)
    if len(outs[0]) > 1 and any(o != outs[0] for o in outs):
        raise NotSeparable(f"the template layers hand on different residual slots: {outs}")
    for lg in layers:
        if len(lg.residual_in) > 1:
            own = [n for n in nodes if layer_of_node.get(id(n)) == lg.index]
            if keys(lg.residual_in, own) != outs[0]:
                raise NotSeparable(f"template layer {lg.index} reads its residual inputs as {keys(lg.residual_in, own)}, not as {outs[0]}")


def analyse(model, plan: Plan, recipes: dict[str, Recipe], hidden: int, check_params: dict[str, Any] | None, stamped: bool = False) -> list[LayerGraph]:
    """Find and check the template layers' subgraphs (NotSeparable if the boundary is not clean).
    ``stamped``: the graph was itself stamped (a fusion template), so folded tensors are named
    ``<prefix><j>.<recipe>`` and no other initializer is folded from a layer."""
    import numpy as np

    from sphana_bridge.export_model import input_names, output_names

    graph = model.graph
    k = len(plan.templates)
    prefix = plan.prefix
    inputs = {v.name: v for v in graph.inputs}
    outputs = {v.name: v for v in graph.outputs}
    if list(inputs) != input_names(k) or list(outputs) != output_names(k):
        raise NotSeparable(f"template graph I/O {list(inputs)} -> {list(outputs)} is not the contract for {k} layers")
    layers = [LayerGraph(j) for j in range(k)]
    owner: dict[str, int] = {}  # initializer -> template layer it belongs to
    for name, value in graph.initializers.items():
        direct = _layer_of(name, prefix)
        key = name
        if direct is not None:
            suffix = name[len(f"{prefix}{direct}."):]
            if suffix not in recipes:
                layers[direct].params[name] = value
                owner[name] = direct
                continue
            key = suffix  # a folded tensor stamped into a layer (fusion templates): <prefix><j>.<recipe>
        elif stamped:
            continue
        recipe = recipes.get(key)
        if recipe is None:
            continue
        owners = {_layer_of(p, prefix) for p in recipe.params}
        if len(owners) != 1:
            raise NotSeparable(f"initializer {name} is folded from parameters of template layers {sorted(owners)}")
        src = owners.pop()
        j = src if direct is None else direct
        if check_params is not None:
            got = run_recipe(recipe, key, {p: check_params[p] for p in recipe.params})
            want = value.const_value.numpy()
            if got.shape != want.shape or got.dtype != want.dtype or not np.array_equal(got, want):
                raise NotSeparable(f"the recipe of folded initializer {name} does not reproduce it")
        layers[j].folded[name] = value
        layers[j].folded_from[name] = (key, src)
        owner[name] = j
    for j, lg in enumerate(layers):
        lg.past = [inputs[f"past_key_values.{j}.key"], inputs[f"past_key_values.{j}.value"]]
        lg.present = [outputs[f"present.{j}.key"], outputs[f"present.{j}.value"]]

    nodes = list(graph)
    scoped: list[list[Any]] = [[] for _ in range(k)]
    for node in nodes:
        j = _scope(node, prefix)
        if j is not None:
            if j >= k:
                raise NotSeparable(f"node {node.name} is scoped to layer {j} of a {k}-layer template")
            scoped[j].append(node)
    layer_of_node: dict[int, int] = {}
    for j, lg in enumerate(layers):
        members = {id(n) for n in scoped[j]}
        external = []
        for n in scoped[j]:
            for v in n.inputs:
                if v is None or v.is_graph_input() or v.is_initializer():
                    continue
                p = v.producer()
                if p is None or id(p) not in members:
                    if v not in external:
                        external.append(v)
        cands = [v for v in external if _is_hidden(v, hidden)]
        if not 1 <= len(cands) <= MAX_RESIDUAL_VALUES:
            raise NotSeparable(f"template layer {j} reads {len(cands)} residual-stream-shaped values from outside (expected 1 to {MAX_RESIDUAL_VALUES})")
        members_in = [n for n in scoped[j]]
        lg.residual_in = sorted(cands, key=lambda v: _slot_key(v, members_in))
        seeds = {id(v) for v in lg.residual_in} | {id(v) for v in lg.past} | {id(v) for v in list(lg.params.values()) + list(lg.folded.values())}
        for n in scoped[j]:
            if any(v is not None and id(v) in seeds for v in n.inputs):
                lg.nodes.append(n)
                layer_of_node[id(n)] = j
                seeds.update(id(o) for o in n.outputs)
        if not lg.nodes:
            raise NotSeparable(f"template layer {j} has no layer-dependent nodes")
    # Boundary checks.
    dep_values: dict[int, int] = {}  # id(value) -> layer whose dependent nodes produce it
    for lg in layers:
        for n in lg.nodes:
            for o in n.outputs:
                dep_values[id(o)] = lg.index
    for lg in layers:
        outs = []
        for n in lg.nodes:
            for o in n.outputs:
                leaves = [u.node for u in o.uses() if layer_of_node.get(id(u.node)) != lg.index]
                if leaves or o.is_graph_output():
                    outs.append(o)
        present_ids = {id(v) for v in lg.present}
        if not all(p.producer() is not None and layer_of_node.get(id(p.producer())) == lg.index for p in lg.present):
            raise NotSeparable(f"present.{lg.index}.* are not computed by template layer {lg.index}")
        rest = [o for o in outs if id(o) not in present_ids]
        if not 1 <= len(rest) <= MAX_RESIDUAL_VALUES or not all(_is_hidden(o, hidden) for o in rest) or any(o.is_graph_output() for o in rest):
            raise NotSeparable(f"template layer {lg.index} hands on {[o.name for o in rest]} (expected only its residual output)")
        downstream = [n for n in nodes if layer_of_node.get(id(n)) != lg.index]
        lg.residual_out = sorted(rest, key=lambda v: _slot_key(v, downstream))
    for j in range(1, k):
        if {id(v) for v in layers[j].residual_in} != {id(v) for v in layers[j - 1].residual_out}:
            raise NotSeparable(f"template layer {j} does not read exactly template layer {j - 1}'s residual output")
    _check_slots(layers, nodes, layer_of_node)
    last = layers[-1].residual_out
    last_ids = {id(v) for v in last}
    # Values depending on any layer-dependent node may flow only along each layer's own chain
    # (and, after the last layer, into the final norm and head).
    tainted: set[int] = set()
    for node in nodes:
        j = layer_of_node.get(id(node))
        for v in node.inputs:
            if v is None:
                continue
            src = dep_values.get(id(v))
            if v.is_initializer() and v.name in owner and owner[v.name] != j:
                raise NotSeparable(f"node {node.name} reads {v.name}, a parameter of template layer {owner[v.name]}")
            if j is not None:
                if src is not None and src != j and not any(v is r for r in layers[j].residual_in):
                    raise NotSeparable(f"template layer {j} reads {v.name} from inside template layer {src}")
                if src is None and id(v) in tainted:
                    raise NotSeparable(f"template layer {j} reads {v.name}, computed outside the layers from a layer's output")
            elif src is not None and id(v) not in last_ids:
                raise NotSeparable(f"node {node.name} outside the layers reads {v.name} from inside template layer {src}")
        if j is None and any(v is not None and (id(v) in last_ids or id(v) in tainted) for v in node.inputs):
            tainted.update(id(o) for o in node.outputs)
    return layers


# --------------------------------------------------------------------------------------
# 4. stamping
# --------------------------------------------------------------------------------------


def _copy_value(v, name: str):
    import onnx_ir as ir

    return ir.Value(name=name, shape=ir.Shape(list(v.shape)) if v.shape is not None else None, type=v.type)


def _copy_attrs(node) -> list[Any]:
    import onnx_ir as ir

    out = []
    for a in node.attributes.values():
        if a.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS):
            raise NotSeparable(f"node {node.name} has a subgraph attribute")
        out.append(ir.Attr(a.name, a.type, a.value, ref_attr_name=a.ref_attr_name, doc_string=a.doc_string))
    return out


def stamp(model, plan: Plan, layers: list[LayerGraph], recipes: dict[str, Recipe], state: dict[str, Any]) -> dict[str, Any]:
    """Replace the template layers by one copy per real layer, bound to that layer's tensors
    (``state``: torch parameter/buffer name -> tensor of the REAL model)."""
    import numpy as np
    import onnx_ir as ir

    graph = model.graph
    prefix, tprefix = plan.prefix, plan.path + "."

    def real_name(name: str, j: int, i: int) -> str:
        return f"{prefix}{i}." + name[len(f"{prefix}{j}."):]

    def tensor_of(onnx_name: str):
        t = state[onnx_name[len(INNER):]]
        return t.detach().numpy()

    # Free the template's names and weights.
    for lg in layers:
        for v in lg.past + lg.present:
            v.name = f"{v.name}.template"
        for name in list(lg.params) + list(lg.folded):
            graph.initializers.pop(name)
    std_inputs = [v for v in graph.inputs][:3]
    logits = list(graph.outputs)[0]
    current = list(layers[plan.type_of[0]].residual_in)
    new_inputs, new_outputs = [], []
    stamped_nodes = 0
    lazy = 0
    for i in range(plan.num_layers):
        j = plan.type_of[i]
        lg = layers[j]
        if len(lg.residual_in) != len(current):
            raise NotSeparable(f"layer {i} (template {j}) reads {len(lg.residual_in)} residual values, layer {i - 1} hands on {len(current)}")
        mapping: dict[int, Any] = {id(v): c for v, c in zip(lg.residual_in, current)}
        if plan.templates[j] == i:
            past = lg.past
            for v, kv in zip(past, ("key", "value")):
                v.name = f"past_key_values.{i}.{kv}"
        else:
            past = [_copy_value(v, f"past_key_values.{i}.{kv}") for v, kv in zip(lg.past, ("key", "value"))]
        for old, new in zip(lg.past, past):
            mapping[id(old)] = new
        new_inputs.extend(past)
        for name, old in lg.params.items():
            new_name = real_name(name, j, i)
            arr = tensor_of(new_name)
            if tuple(arr.shape) != tuple(old.shape) or np.dtype(arr.dtype) != old.dtype.numpy():
                raise NotSeparable(f"{new_name} is {arr.dtype}{list(arr.shape)}, the template's {name} {old.dtype}{list(old.shape)}")
            v = ir.Value(name=new_name, shape=ir.Shape(arr.shape), type=old.type, const_value=ir.Tensor(arr, name=new_name))
            graph.register_initializer(v)
            mapping[id(old)] = v
        for name, old in lg.folded.items():
            key, src = lg.folded_from[name]
            recipe = recipes[key]
            sources = {p: real_name(p, src, i) for p in recipe.params}
            new_name = f"{prefix}{i}.{key}"

            def compute(recipe=recipe, key=key, sources=sources):
                return ir.Tensor(np.ascontiguousarray(run_recipe(recipe, key, {p: tensor_of(s) for p, s in sources.items()})))

            const = ir.LazyTensor(compute, dtype=old.dtype, shape=ir.Shape(list(old.shape)), name=new_name)
            v = ir.Value(name=new_name, shape=ir.Shape(list(old.shape)), type=old.type, const_value=const)
            graph.register_initializer(v)
            mapping[id(old)] = v
            lazy += 1
        tag = f"{prefix}{i}"
        old_tag = f"{prefix}{j}"
        for node in lg.nodes:
            outs = []
            for o in node.outputs:
                if o is lg.present[0]:
                    nv = _copy_value(o, f"present.{i}.key")
                elif o is lg.present[1]:
                    nv = _copy_value(o, f"present.{i}.value")
                else:
                    nv = _copy_value(o, f"{tprefix}{i}/{o.name}")
                mapping[id(o)] = nv
                outs.append(nv)
            meta = {k: v.replace(old_tag, tag) for k, v in node.metadata_props.items() if k in (SCOPES_KEY, "namespace")}
            clone = ir.Node(
                node.domain, node.op_type, [mapping.get(id(v), v) if v is not None else None for v in node.inputs],
                _copy_attrs(node), overload=node.overload, outputs=outs, version=node.version,
                name=f"{tprefix}{i}/{node.name}", doc_string=node.doc_string, metadata_props=meta,
            )
            graph.append(clone)
            stamped_nodes += 1
        new_outputs.extend(mapping[id(v)] for v in lg.present)
        current = [mapping[id(v)] for v in lg.residual_out]
    # The epilogue reads the last real layer's residual output (slot by slot).
    template_nodes = {id(n) for lg in layers for n in lg.nodes}
    for v, c in zip(layers[-1].residual_out, current):
        for use in list(v.uses()):
            if id(use.node) not in template_nodes:
                use.node.replace_input_with(use.idx, c)
    graph.outputs.clear()
    graph.outputs.extend([logits, *new_outputs])
    graph.inputs.clear()
    graph.inputs.extend([*std_inputs, *new_inputs])
    graph.remove([n for lg in layers for n in lg.nodes], safe=True)
    graph.sort()
    return {"stampedNodes": stamped_nodes, "foldedPerLayer": lazy // max(1, plan.num_layers)}


def template_state(model) -> dict[str, Any]:
    """torch name -> tensor, parameters and buffers (tied ones under every name)."""
    out = dict(model.named_buffers(remove_duplicate=False))
    out.update(dict(model.named_parameters(remove_duplicate=False)))
    return out


# --------------------------------------------------------------------------------------
# the whole thing
# --------------------------------------------------------------------------------------


@dataclass
class TemplateTrace:
    """The traced k-layer template (one layer per layer type) and what stamping it needs."""

    model: Any  # onnx_ir model of the template, not stamped yet
    plan: Plan
    recipes: dict[str, Recipe]
    check: dict[str, Any]  # the template layers' (random) parameters, onnx name -> numpy
    seconds: float


def trace_template(model, facts: dict[str, Any], opset: int, sizes: Sequence[int]) -> TemplateTrace:
    """Trace the model cut down to one layer per layer type (NotSeparable when nothing would be saved)."""
    import time

    import torch

    from sphana_bridge.export_model import export_dynamo, make_wrapper, sample_inputs

    t = time.monotonic()
    plan = plan_layers(model)
    k = len(plan.templates)
    if k >= plan.num_layers:
        raise NotSeparable(f"every layer is its own type ({k} of {plan.num_layers}): nothing to stamp")
    recipes: dict[str, Recipe] = {}
    b, s, p = sizes
    with template_model(model, plan) as tm:
        check = {INNER + n: v.detach().numpy() for n, v in template_state(tm).items() if (INNER + n).startswith(plan.prefix)}
        wrapper = make_wrapper(tm, k)
        args = sample_inputs(dict(facts, num_layers=k), b, s, p)
        with torch.inference_mode(False):
            onnx_model = export_dynamo(wrapper, args, k, opset, before_optimize=lambda m: recipes.update(record_recipes(m, plan.prefix)))
        del wrapper, args
    return TemplateTrace(onnx_model, plan, recipes, check, round(time.monotonic() - t, 3))


def stamp_unfused(tt: TemplateTrace, model, hidden: int) -> tuple[Any, dict[str, Any]]:
    """The whole decoder from the template, every layer a copy of its type's traced layer
    (consumes ``tt.model``)."""
    import time

    t = time.monotonic()
    layers = analyse(tt.model, tt.plan, tt.recipes, hidden, tt.check)
    info = stamp(tt.model, tt.plan, layers, tt.recipes, template_state(model))
    onnx_model, tt.model = tt.model, None
    return onnx_model, {
        "applied": True,
        "templateLayers": tt.plan.templates,
        "layerTypes": tt.plan.type_names,
        "layers": tt.plan.num_layers,
        **info,
        "seconds": {"trace": tt.seconds, "stamp": round(time.monotonic() - t, 3)},
    }


def _fusion_layers(plan: Plan) -> tuple[list[int], list[int]]:
    """Which real layers a fusion template holds, and their types: layer 0 (fused, the first layer
    has no preceding residual add to merge into its input norm) and the first later layer of every
    type (the form every other layer of that type takes)."""
    real, types = [0], [plan.type_of[0]]
    for i in range(1, plan.num_layers):
        t = plan.type_of[i]
        if t not in types[1:]:
            real.append(i)
            types.append(t)
    return real, types


def _random_like(array, seed: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    return (rng.standard_normal(array.shape) * 0.05 + 0.5).astype(array.dtype)


def stamp_fused(tt: TemplateTrace, model, hidden: int, fuse: Any) -> tuple[Any, dict[str, Any]]:
    """The whole decoder with onnxruntime's fusions, built without fusing every layer.

    1. A fusion template: the traced template stamped (random, distinct weights per layer, so no
       two initializers are equal) into a small model of ``_fusion_layers``: layer 0 and one later
       layer per type.
    2. ``fuse`` (onnxscript's optimize_for_ort) on that small model: its first layer and each
       later layer are now in their fused form (a later layer starts with the
       SkipSimplifiedLayerNormalization that adds the previous layer's output to the residual).
    3. That fused graph is analysed like a traced template (a fused layer hands on two residual
       values) and stamped with the real weights: real layer 0 from its layer 0, every other layer
       from the later layer of its type.
    ``tt.model`` is left as it was (cloned first). Raises NotSeparable or whatever fusion raised."""
    import time

    times: dict[str, float] = {}
    t = time.monotonic()
    plan = tt.plan
    real, types = _fusion_layers(plan)
    src = tt.model.clone()
    src_layers = analyse(src, plan, tt.recipes, hidden, tt.check)
    state: dict[str, Any] = {}
    for i, ty in enumerate(types):
        head = f"{plan.prefix}{ty}."
        for name, array in tt.check.items():
            if name.startswith(head):
                state[f"{plan.path}.{i}.{name[len(head):]}"] = _TensorLike(_random_like(array, TEMPLATE_SEED + 1 + len(state)))
    src_plan = Plan(plan.path, len(types), list(types), [types.index(j) for j in range(len(plan.templates))], list(plan.type_names))
    stamp(src, src_plan, src_layers, tt.recipes, state)
    times["template"] = round(time.monotonic() - t, 3)
    t = time.monotonic()
    fused, counts = fuse(src)
    times["fuse"] = round(time.monotonic() - t, 3)
    t = time.monotonic()
    later = {ty: j for j, ty in enumerate(types) if j > 0}
    fplan = Plan(plan.path, plan.num_layers, [0] + [later[plan.type_of[i]] for i in range(1, plan.num_layers)], real, [plan.type_names[ty] for ty in types])
    flayers = analyse(fused, fplan, tt.recipes, hidden, None, stamped=True)
    info = stamp(fused, fplan, flayers, tt.recipes, template_state(model))
    times["stamp"] = round(time.monotonic() - t, 3)
    return fused, {
        "applied": True,
        "templateLayers": real,
        "layerTypes": fplan.type_names,
        "layers": plan.num_layers,
        "fusionCounts": {k: int(v) for k, v in sorted(counts.items()) if v},
        **info,
        "seconds": {"trace": tt.seconds, **times},
    }


class _TensorLike:
    """A numpy array where stamp() expects a torch tensor (``.detach().numpy()``)."""

    def __init__(self, array):
        self.array = array

    def detach(self):
        return self

    def numpy(self):
        return self.array


def export_stamped(model, facts: dict[str, Any], opset: int, sizes: Sequence[int]) -> tuple[Any, dict[str, Any]]:
    """The onnx_ir model of the whole decoder, built from a k-layer template trace. Raises
    NotSeparable (or whatever failed) when it cannot; the caller then traces the full model."""
    return stamp_unfused(trace_template(model, facts, opset, sizes), model, facts["hidden_size"])
