import { totalmem } from 'node:os';
import type { Output } from '../cli/output.js';
import { FAMILIES, describeArchitecture, parameterCount } from '../models/index.js';
import { bytes, count } from './inspect-render.js';

/** `sphana models`: the presets and their dimensions. */
export async function run(_args: string[], _options: object, out: Output): Promise<number> {
  const rows = FAMILIES.flatMap((family) => family.presets.map((preset) => {
    const a = describeArchitecture(preset.config);
    const parameters = parameterCount(preset.config);
    return {
      name: preset.name, hubId: preset.hubId, family: family.id, architecture: a.architecture,
      layers: a.layers, hiddenSize: a.hiddenSize, numAttentionHeads: a.numAttentionHeads, numKvHeads: a.numKvHeads,
      headDim: a.headDim, vocabSize: a.vocabSize, contextLength: a.contextLength, tiedEmbeddings: a.tiedEmbeddings,
      parameters, fp32Bytes: parameters * 4, fp32FitsInMemory: parameters * 4 < totalmem(), offlineTokenizer: preset.offlineTokenizer?.npmPackage ?? null, traits: family.traits,
    };
  }));
  out.json(JSON.stringify({ models: rows }));
  const header = ['preset', 'hub id', 'layers', 'hidden', 'heads', 'kv', 'head dim', 'vocab', 'params', 'fp32', 'tied'];
  const table = rows.map((r) => [r.name, r.hubId, String(r.layers), String(r.hiddenSize), String(r.numAttentionHeads), String(r.numKvHeads), String(r.headDim), String(r.vocabSize), count(r.parameters), bytes(r.fp32Bytes), r.tiedEmbeddings ? 'yes' : 'no']);
  const widths = header.map((h, i) => Math.max(h.length, ...table.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd();
  out.result(line(header));
  for (const r of table) out.result(line(r));
  for (const r of rows.filter((x) => !x.fp32FitsInMemory)) {
    out.result(`${r.name}: its fp32 weights alone (${bytes(r.fp32Bytes)}) exceed this machine's memory (${bytes(totalmem())}); export it with --synthetic tiny here, or at full size on a bigger machine`);
  }
  return 0;
}
