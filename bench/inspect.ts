import { spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { inspectFile } from '../src/onnx/summary.js';
import { MB, median } from './measure.js';

/**
 * `sphana inspect` on a 1.5 GB single-file model and a 5 GB external-data model, against
 * reading the file once (`cat`, warm cache) and python `onnx.load(load_external_data=False)`.
 */
export async function benchInspect(cache: string, python: string, bin: string): Promise<string[]> {
  const build = spawnSync(python, [join(import.meta.dirname, '../../bench/make_big_models.py'), cache], { stdio: 'inherit' });
  if (build.status !== 0) throw new Error('building the benchmark models failed');
  const rows = ['| model | file bytes | read once (cat) | sphana inspect (CLI) | inspect in-process | peak RSS (CLI) | onnx.load(load_external_data=False) | its peak RSS |', '|---|---|---|---|---|---|---|---|'];
  for (const [label, model, data] of [
    ['1.5 GB single file', join(cache, 'inline-1.5g.onnx'), join(cache, 'inline-1.5g.onnx')],
    ['5 GB external data', join(cache, 'external-5g/model.onnx'), join(cache, 'external-5g/model.onnx.data')],
  ] as const) {
    if (!existsSync(model)) throw new Error(`missing ${model}`);
    const bytes = statSync(data).size + (data === model ? 0 : statSync(model).size);
    const cat = median('sh', ['-c', `cat '${model}' ${data === model ? '' : `'${data}'`} > /dev/null`]);
    const cli = median(process.execPath, [bin, 'inspect', '--json', model]);
    if (cli.exitCode !== 0) throw new Error(`inspect failed on ${model}`);
    const times: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t = performance.now();
      inspectFile(model);
      times.push((performance.now() - t) / 1000);
    }
    times.sort((a, b) => a - b);
    const py = median(python, ['-c', 'import onnx,sys; onnx.load(sys.argv[1], load_external_data=False)', model], 3);
    rows.push(`| ${label} | ${bytes} | ${cat.seconds.toFixed(2)} s | ${cli.seconds.toFixed(2)} s | ${times[2].toFixed(3)} s | ${MB(cli.peakRssBytes)} | ${py.seconds.toFixed(2)} s | ${MB(py.peakRssBytes)} |`);
  }
  return rows;
}
