import { spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { median } from './measure.js';

/**
 * Start-up: `sphana --version` against `node -e 0`, and `sphana inspect` of the 1.5 GB single-file
 * model against one `cat` of the file (warm page cache), as one-run ratios of medians.
 * Targets (issue 12): --version ≤ 2× node; inspect ≤ 0.5× cat.
 */
export async function benchStartup(cache: string, python: string, bin: string, runs = 11): Promise<string[]> {
  const model = join(cache, 'inline-1.5g.onnx');
  if (!existsSync(model)) {
    const build = spawnSync(python, [join(import.meta.dirname, '../../bench/make_big_models.py'), cache], { stdio: 'inherit' });
    if (build.status !== 0 || !existsSync(model)) throw new Error('building the benchmark models failed');
  }
  const node = median(process.execPath, ['-e', '0'], runs);
  const version = median(process.execPath, [bin, '--version'], runs);
  const help = median(process.execPath, [bin, '--help'], runs);
  const cat = median('sh', ['-c', `cat '${model}' > /dev/null`], runs);
  const inspect = median(process.execPath, [bin, 'inspect', '--json', model], runs);
  for (const m of [version, help, inspect]) if (m.exitCode !== 0) throw new Error('a sphana run failed');
  const ratio = (a: number, b: number) => (b > 0 ? (a / b).toFixed(2) : 'n/a');
  return [
    `Median of ${runs} runs each (after one warm-up), wall time by /usr/bin/time (10 ms resolution). Model: ${statSync(model).size} bytes.`,
    '',
    '| command | median | ratio | target |',
    '|---|---|---|---|',
    `| \`node -e 0\` | ${node.seconds.toFixed(2)} s | 1 | |`,
    `| \`sphana --version\` | ${version.seconds.toFixed(2)} s | ${ratio(version.seconds, node.seconds)}× node | ≤ 2× |`,
    `| \`sphana --help\` | ${help.seconds.toFixed(2)} s | ${ratio(help.seconds, node.seconds)}× node | |`,
    `| \`cat\` of the 1.5 GB model | ${cat.seconds.toFixed(2)} s | 1 | |`,
    `| \`sphana inspect --json\` of it | ${inspect.seconds.toFixed(2)} s | ${ratio(inspect.seconds, cat.seconds)}× cat | ≤ 0.5× |`,
  ];
}
