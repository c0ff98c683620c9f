/**
 * The export pipeline's optimize step: onnxruntime fusions on the exported fp32 model (the bridge's
 * `optimize` command, gated by the same parity check as the export). When the fused model is not
 * applied (fusion failed, the I/O changed, parity broke) the unfused model goes in its place and the
 * reason is recorded.
 */
import { copyFileSync, existsSync, linkSync, renameSync, rmSync } from 'node:fs';
import type { ManifestOptimization } from '../manifest/schema.js';
import type { BridgeEnvironment } from '../python/environment.js';
import { bridgeOptimize } from '../python/entry-points.js';
import { protoLimitBytes } from '../quantize/run.js';

import type { OptimizeMode } from '../vocabulary.js';

export { OPTIMIZE_MODES, type OptimizeMode } from '../vocabulary.js';
export type OptimizeSummary = ManifestOptimization;

export interface OptimizeStepOptions {
  mode: Exclude<OptimizeMode, 'none'>;
  input: string;
  output: string;
  modelDir: string;
  env: BridgeEnvironment;
  signal?: AbortSignal;
  onProgress?: (message: string) => void;
}

/** A hard link (same bytes, no copy) or else a copy, under a temporary name renamed into place. */
function place(from: string, to: string): void {
  const tmp = `${to}.sphana-tmp`;
  rmSync(tmp, { force: true });
  try { linkSync(from, tmp); } catch { copyFileSync(from, tmp); }
  renameSync(tmp, to);
}

export async function optimizeStep(o: OptimizeStepOptions): Promise<{ result: OptimizeSummary; detail: string }> {
  for (const f of [o.output, `${o.output}.data`]) rmSync(f, { force: true });
  const r = await bridgeOptimize(o.env, { input: o.input, output: o.output, modelDir: o.modelDir, fusions: o.mode, protoLimitBytes: protoLimitBytes() }, {
    signal: o.signal, onProgress: (p) => o.onProgress?.(`${p.step}: ${p.message}`),
  });
  const result: OptimizeSummary = {
    mode: o.mode, applied: r.applied, reason: r.reason ?? null, fusionCounts: r.fusionCounts, nonStandardOps: r.nonStandardOps,
    untiedLmHead: r.untiedLmHead.length > 0, parity: r.parity ?? null,
  };
  if (!r.applied) {
    // The unfused model, under the artifact's name (its external data keeps its file name).
    place(o.input, o.output);
    if (existsSync(`${o.input}.data`)) place(`${o.input}.data`, `${o.output}.data`);
    return { result, detail: `not applied, unfused model kept: ${r.reason}` };
  }
  const counts = Object.entries(r.fusionCounts).map(([k, v]) => `${k} ${v}`).join(', ');
  return { result, detail: `${counts}; parity max |Δlogits| ${r.parity!.maxAbsDiff.toExponential(2)}` };
}
