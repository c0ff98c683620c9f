import { walkGraphs } from './graph-walk.js';
import type { GraphProto, ModelProto, SparseTensorProto, TensorProto } from './proto-types.js';

export const DATA_LOCATION_EXTERNAL = 1;

/**
 * Every dense tensor the model carries: initializers, sparse parts, attribute tensors, function
 * bodies and training-info graphs, at any nesting depth (a superset of what onnx and
 * onnxruntime load external data for).
 */
export function* allTensors(model: ModelProto): Generator<TensorProto> {
  const roots: GraphProto[] = [
    model.graph ?? {},
    ...(model.functions ?? []).map((fn) => ({ node: fn.node })),
    ...(model.training_info ?? []).flatMap((t) => [t.initialization, t.algorithm].filter((g): g is GraphProto => !!g)),
  ];
  for (const root of roots) {
    for (const graph of walkGraphs(root)) {
      for (const t of graph.initializer ?? []) yield t;
      for (const s of graph.sparse_initializer ?? []) yield* sparseParts(s);
      for (const node of graph.node ?? []) {
        for (const a of node.attribute ?? []) {
          if (a.t) yield a.t;
          for (const t of a.tensors ?? []) yield t;
          if (a.sparse_tensor) yield* sparseParts(a.sparse_tensor);
          for (const s of a.sparse_tensors ?? []) yield* sparseParts(s);
        }
      }
    }
  }
}

function* sparseParts(sparse: SparseTensorProto): Generator<TensorProto> {
  if (sparse.values) yield sparse.values;
  if (sparse.indices) yield sparse.indices;
}

/** The main graph's initializers, dense parts of sparse ones included. */
export function* mainInitializerTensors(model: ModelProto): Generator<TensorProto> {
  for (const t of model.graph?.initializer ?? []) yield t;
  for (const s of model.graph?.sparse_initializer ?? []) yield* sparseParts(s);
}

export function isExternal(tensor: TensorProto): boolean {
  return tensor.data_location === DATA_LOCATION_EXTERNAL;
}

export function externalEntry(tensor: TensorProto, key: string): string | undefined {
  let found: string | undefined;
  for (const entry of tensor.external_data ?? []) if (entry.key === key) found = entry.value;
  return found;
}
