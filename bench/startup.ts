import { spawnSync } from 'node:child_process';
import { existsSync, statSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';

/**
 * Start-up: `sphana --version` against `node -e 0`, and `sphana inspect` of the 1.5 GB single-file
 * model against one `cat` of the file (warm page cache). Targets (issue 12): --version ≤ 2× node;
 * inspect ≤ 0.5× cat.
 *
 * The machine may be shared, so the commands run alternated: each round runs every command once
 * (after one warm-up round), and a ratio is taken inside each round, then the median over rounds.
 * Wall time is measured around spawnSync with hrtime (sub-millisecond; the same spawn overhead
 * for every command). Absolute medians are printed too, with the load average before and after.
 * `node` running an empty ES module is shown as the floor for any ESM launcher (the loader's own
 * start), and `inspect − node` is what sphana adds to a bare node start. inspect runs from its
 * bundle (scripts/bundle-fast-path.js) with the V8 code cache the warm-up run leaves; the run
 * without a cache is what a first run (or a new build) pays once.
 */
export async function benchStartup(cache: string, python: string, bin: string, rounds = 21): Promise<string[]> {
  const model = join(cache, 'inline-1.5g.onnx');
  if (!existsSync(model)) {
    const build = spawnSync(python, [join(import.meta.dirname, '../../bench/make_big_models.py'), cache], { stdio: 'inherit' });
    if (build.status !== 0 || !existsSync(model)) throw new Error('building the benchmark models failed');
  }
  const emptyModule = join(cache, 'empty-module.mjs');
  writeFileSync(emptyModule, 'export {};\n');
  const node = process.execPath;
  const commands = {
    node: [node, '-e', '0'],
    esm: [node, emptyModule],
    version: [node, bin, '--version'],
    help: [node, bin, '--help'],
    cat: ['sh', '-c', `cat '${model}' > /dev/null`],
    inspect: [node, bin, 'inspect', '--json', model],
    // A first run: the launcher finds no V8 code cache for its bundle (the cache folder is a file,
    // so none is ever written); `env` adds one exec.
    inspectCold: ['env', `SPHANA_CACHE_DIR=${emptyModule}`, node, bin, 'inspect', '--json', model],
  } satisfies Record<string, string[]>;
  type Name = keyof typeof commands;
  const names = Object.keys(commands) as Name[];
  // CPU time (user + system, every thread) by `perf stat -e task-clock` when perf is there: on a shared
  // machine wall time includes waiting for a core, CPU time is the work itself.
  const perf = spawnSync('perf', ['stat', '-x,', '-e', 'task-clock', 'true'], { encoding: 'utf8' });
  const hasPerf = perf.status === 0 && /task-clock/.test(perf.stderr);
  const wall = Object.fromEntries(names.map((n) => [n, [] as number[]])) as Record<Name, number[]>;
  const cpu = Object.fromEntries(names.map((n) => [n, [] as number[]])) as Record<Name, number[]>;
  const run = (argv: string[]) => {
    const started = process.hrtime.bigint();
    const r = spawnSync(argv[0], argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    if (r.status !== 0) throw new Error(`${argv.join(' ')} failed (${r.status ?? r.signal}): ${r.stderr.slice(-500)}`);
    return { ms, stderr: r.stderr };
  };
  const once = (name: Name) => {
    wall[name].push(run(commands[name]).ms);
    if (!hasPerf) return;
    const line = run(['perf', 'stat', '-x,', '-e', 'task-clock', ...commands[name]]).stderr.split('\n').find((l) => l.includes('task-clock'));
    cpu[name].push(Number(line?.split(',')[0]));
  };
  const loadBefore = loadavg();
  for (const name of names) once(name); // warm-up (page cache, disk cache of the binaries)
  for (const name of names) { wall[name] = []; cpu[name] = []; }
  for (let round = 0; round < rounds; round++) {
    // Rotate the order so no command always follows the same one.
    for (let i = 0; i < names.length; i++) once(names[(i + round) % names.length]);
  }
  const loadAfter = loadavg();
  const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
  const f = (x: number) => x.toFixed(0);
  const r = (x: number) => `${x.toFixed(2)}×`;
  const load = (l: number[]) => l.map((x) => x.toFixed(2)).join(', ');
  const columns = (t: Record<Name, number[]>) => {
    const med = (n: Name) => `${f(median(t[n]))} ms`;
    const ratio = (a: Name, b: Name) => r(median(t[a].map((x, i) => x / t[b][i])));
    return {
      node: [med('node'), '1'], esm: [med('esm'), `${ratio('esm', 'node')} node`],
      version: [med('version'), `${ratio('version', 'node')} node`], help: [med('help'), `${ratio('help', 'node')} node`],
      cat: [med('cat'), '1'], inspect: [med('inspect'), `${ratio('inspect', 'cat')} cat`],
      inspectCold: [med('inspectCold'), `${ratio('inspectCold', 'cat')} cat`],
      floor: ['', `${ratio('node', 'cat')} cat`], inspectNode: [`${f(median(t.inspect.map((x, i) => x - t.node[i])))} ms`, `${ratio('inspect', 'node')} node`],
    };
  };
  const w = columns(wall);
  const c = hasPerf ? columns(cpu) : undefined;
  const row = (label: string, key: keyof typeof w, target = '') =>
    `| ${label} | ${w[key][0]} | ${w[key][1]} | ${c ? `${c[key][0]} | ${c[key][1]} | ` : ''}${target} |`;
  return [
    `${rounds} alternated rounds (after one warm-up; the order rotates each round). Wall time by hrtime around spawnSync;`,
    `${hasPerf ? 'CPU time (user + system, all threads) by `perf stat -e task-clock` in a separate run of each command in the same round; ' : ''}`
      + 'ratios are the median over rounds of the ratio inside each round.',
    `Model: ${statSync(model).size} bytes. Load average (1, 5, 15 min) before: ${load(loadBefore)}; after: ${load(loadAfter)}`
      + `${loadBefore[0] > 1.5 ? ' (the machine was shared: wall times include waiting for a core)' : ''}.`,
    '',
    `| command | wall median | wall ratio | ${hasPerf ? 'CPU median | CPU ratio | ' : ''}target |`,
    `|---|---|---|${hasPerf ? '---|---|' : ''}---|`,
    row('`node -e 0`', 'node'),
    row('`node empty.mjs` (an empty ES module)', 'esm'),
    row('`sphana --version`', 'version', '≤ 2× node'),
    row('`sphana --help`', 'help'),
    row('`cat` of the 1.5 GB model', 'cat'),
    row('`sphana inspect --json` of it', 'inspect', '≤ 0.5× cat'),
    row('the same without the code cache (a first run)', 'inspectCold'),
    row('`node -e 0` against that `cat` (the floor)', 'floor'),
    row('inspect − `node -e 0` (per round)', 'inspectNode'),
  ];
}
