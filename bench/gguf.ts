import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { MB } from './measure.js';
import { traceRun } from './tree-rss.js';

/**
 * `sphana export FILE.gguf` on the real test model (SmolLM2-135M-Instruct Q4_1, fetched like the
 * tests fetch it): wall time and process-tree peak RSS of every step, the GGUF conversion first.
 */
export async function benchGguf(cache: string, bin: string, python: string, root: string): Promise<string[]> {
  const { ensureTestGguf } = (await import(pathToFileURL(join(root, 'scripts/test-model.js')).href)) as { ensureTestGguf: (py: string) => Promise<string> };
  const gguf = process.env.SPHANA_TEST_GGUF ?? (await ensureTestGguf(python));
  const out = join(cache, 'gguf-smollm2');
  const run = await traceRun(process.execPath, [bin, 'export', gguf, '--out', out, '--force', '--json']);
  const rows = [
    '## `sphana export SmolLM2-135M-Instruct.Q4_1.gguf --force` (93 MB GGUF → 538 MB fp32)', '',
    run.exitCode === 0 ? 'exit 0' : `exit ${run.exitCode}: ${(/error (E_\w+: .{0,300})/.exec(run.stderr)?.[1] ?? run.stderr.slice(-300)).replace(/\|/g, '/')}`, '',
    '| step | wall | peak RSS (process tree) |', '|---|---|---|',
    ...run.phases.map((p) => `| ${p.phase} | ${p.seconds.toFixed(1)} s | ${MB(p.peakRssBytes)} |`),
    `| **total** | **${run.seconds.toFixed(1)} s** | **${MB(run.peakRssBytes)}** |`,
  ];
  return rows;
}
