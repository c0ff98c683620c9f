import type { GraphProto, NodeProto } from './proto-types.js';

/** Every node of `graph` and of the subgraphs nested in its attributes, depth first. */
export function* walkNodes(graph: GraphProto | undefined): Generator<NodeProto> {
  if (!graph) return;
  for (const node of graph.node ?? []) {
    yield node;
    for (const sub of subgraphs(node)) yield* walkNodes(sub);
  }
}

/** Every graph nested in a node's attributes (If/Loop/Scan bodies, any GRAPH/GRAPHS attribute). */
export function* subgraphs(node: NodeProto): Generator<GraphProto> {
  for (const attribute of node.attribute ?? []) {
    if (attribute.g) yield attribute.g;
    for (const g of attribute.graphs ?? []) yield g;
  }
}

/** Every graph: the main graph and all nested subgraphs. */
export function* walkGraphs(graph: GraphProto | undefined): Generator<GraphProto> {
  if (!graph) return;
  yield graph;
  for (const node of graph.node ?? []) for (const sub of subgraphs(node)) yield* walkGraphs(sub);
}

/** `op_type` for the default domain, `domain.op_type` otherwise. */
export function opKey(node: NodeProto): string {
  const domain = node.domain ?? '';
  const op = node.op_type ?? '';
  return domain === '' || domain === 'ai.onnx' ? op : `${domain}.${op}`;
}

export function opHistogram(nodes: Iterable<NodeProto>): { count: number; ops: Record<string, number> } {
  const ops: Record<string, number> = {};
  let count = 0;
  for (const node of nodes) {
    count += 1;
    const key = opKey(node);
    ops[key] = (ops[key] ?? 0) + 1;
  }
  return { count, ops };
}
