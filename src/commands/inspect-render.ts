import { escapeStrings } from '../cli/escape.js';
import { chalk } from '../cli/terminal.js';
import type { ModelSummary } from '../onnx/summary.js';
import { type ValueSummary, formatValue } from '../onnx/value-types.js';

/** The compact, human summary of one model (in the spirit of gguf_dump / polygraphy). */
export function renderSummary(summary: ModelSummary): string {
  const s = escapeStrings(summary); // every model string (names, types, metadata, locations) made inert
  const lines: string[] = [];
  const opsets = Object.entries(s.opsets).map(([d, v]) => `${d || 'ai.onnx'} ${v}`).join(', ');
  const producer = [s.producer.name, s.producer.version].filter(Boolean).join(' ') || 'unknown';
  lines.push(`${chalk.bold(s.path)}  ${bytes(s.fileBytes)}  IR ${s.irVersion ?? '?'}  opsets: ${opsets || 'none'}  producer: ${producer}`);
  const kv = s.kvCache;
  const templates = kv ? [kv.pastKeyTemplate, kv.pastValueTemplate, kv.presentKeyTemplate, kv.presentValueTemplate].filter((t): t is string => !!t) : [];
  lines.push(`inputs (${s.inputs.length}):`, ...values(s.inputs, templates));
  lines.push(`outputs (${s.outputs.length}):`, ...values(s.outputs, templates));
  if (kv) {
    const dims = `${kv.layers} layers × ${kv.numKvHeads ?? '?'} kv heads × ${kv.headDim ?? '?'} head dim, ${kv.dtype ?? '?'}`;
    lines.push(`kv cache: ${dims}  (${kv.pastKeyTemplate} → ${kv.presentKeyTemplate ?? '?'})${kv.reason ? chalk.yellow(`  ${kv.reason}`) : ''}`);
  } else {
    lines.push('kv cache: none');
  }
  const ops = Object.entries(s.ops).sort((a, b) => b[1] - a[1]);
  lines.push(`ops (${s.nodeCount} nodes, ${ops.length} kinds): ${ops.slice(0, 12).map(([k, n]) => `${k} ${n}`).join(', ')}${ops.length > 12 ? ', …' : ''}`);
  if (s.functions.length) lines.push(`functions: ${s.functions.map((f) => `${f.name} (${f.nodeCount} nodes)`).join(', ')}`);
  const byType = Object.entries(s.initializers.byType).map(([t, v]) => `${t} ${count(v.parameters)} (${bytes(v.bytes)})`);
  lines.push(`parameters: ${count(s.initializers.parameters)} in ${s.initializers.count} initializers${byType.length ? `: ${byType.join(', ')}` : ''}`);
  const q = s.quantization;
  lines.push(`quantization: ${q.quantized ? `${q.methods.join(', ')} (${q.weightBits.join('/') || '?'}-bit; ${Object.entries(q.quantizedOps).map(([k, n]) => `${k} ${n}`).join(', ')})` : 'none'}`);
  if (q.quantized && q.floatConstantMatMuls.length) lines.push(chalk.yellow(`  ${q.floatConstantMatMuls.length} MatMul/Gemm with a float constant weight left unquantized`));
  if (s.externalDataFiles.length) {
    lines.push('external data:');
    for (const f of s.externalDataFiles) {
      const status = f.status === 'ok' ? chalk.green('ok') : chalk.red(f.status);
      lines.push(`  ${f.location}  ${f.fileBytes === null ? '-' : bytes(f.fileBytes)}  ${f.tensors} tensors  ${status}${f.reason && f.status !== 'ok' ? `  ${f.reason}` : ''}`);
    }
  }
  for (const u of s.unknownExternalDataKeys) lines.push(chalk.yellow(`  unknown external_data key '${u.key}' on ${u.tensor} (ignored)`));
  const meta = Object.entries(s.metadata);
  if (meta.length) lines.push('metadata:', ...meta.map(([k, v]) => `  ${k} = ${v.length > 120 ? `${v.slice(0, 117)}...` : v}`));
  if (s.unknownFields) lines.push(chalk.dim(`${s.unknownFields} unknown protobuf fields skipped`));
  return lines.join('\n');
}

/** I/O lines; a KV family collapses into one line per template. */
function values(list: ValueSummary[], templates: string[]): string[] {
  const width = Math.min(40, Math.max(0, ...list.map((v) => v.name.length), ...templates.map((t) => t.length + 4)));
  const lines: string[] = [];
  const grouped = new Map<string, { first: ValueSummary; n: number }>();
  for (const v of list) {
    const template = templates.find((t) => new RegExp(`^${t.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace('%d', '\\d+')}$`).test(v.name));
    if (template) {
      const g = grouped.get(template);
      if (g) g.n += 1;
      else {
        grouped.set(template, { first: v, n: 1 });
        lines.push(`\u0000${template}`);
      }
      continue;
    }
    lines.push(`  ${v.name.padEnd(width)}  ${formatValue(v)}`);
  }
  return lines.map((l) => {
    if (!l.startsWith('\u0000')) return l;
    const template = l.slice(1);
    const g = grouped.get(template)!;
    return `  ${`${template} ×${g.n}`.padEnd(width)}  ${formatValue(g.first)}`;
  });
}

export function bytes(n: number | bigint): string {
  const v = Number(n);
  if (v < 1024) return `${v} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let x = v / 1024;
  let i = 0;
  while (x >= 1024 && i < units.length - 1) { x /= 1024; i += 1; }
  return `${x.toFixed(x < 10 ? 2 : 1)} ${units[i]}`;
}

export function count(n: number | bigint): string {
  const v = Number(n);
  if (v >= 1e9) return `${(v / 1e9).toFixed(2)}B`;
  if (v >= 1e6) return `${(v / 1e6).toFixed(2)}M`;
  if (v >= 1e3) return `${(v / 1e3).toFixed(1)}K`;
  return String(v);
}
