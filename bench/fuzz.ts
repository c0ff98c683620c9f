import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { MUTATION_KINDS, mutate, rng } from './fuzz-mutants.js';
import { MB, measure } from './measure.js';

/**
 * `npm run bench -- fuzz`: the reader against mutants of every fixture (issue 10).
 * 1. COUNT (default 12,000) mutants inspected in one worker process under /usr/bin/time:
 *    every one must give a summary or a typed one-line error (exit-3 class), none may hang,
 *    peak RSS must stay ≤ 300 MB.
 * 2. CLI_COUNT (default 300) mutants through the real CLI: exit 0 or 3, no stack trace.
 * 3. Bounded work: a 10 MB file of 5 M empty nodes, inspect's time and peak RSS, this build
 *    against a build without the count caps (SPHANA_FUZZ_BASELINE_BIN, e.g. main before issue 10).
 */
export async function benchFuzz(root: string, python: string, bin: string): Promise<string[]> {
  const fixtures = join(root, 'fixtures/generated');
  const build = spawnSync(python, [join(root, 'fixtures/make_fixtures.py'), fixtures], { stdio: 'inherit' });
  if (build.status !== 0) throw new Error('building the fixtures failed');
  const count = Number(process.env.SPHANA_FUZZ_COUNT ?? 12_000);
  const cliCount = Number(process.env.SPHANA_FUZZ_CLI_COUNT ?? 300);
  const seed = Number(process.env.SPHANA_FUZZ_SEED ?? 20261201);
  const work = mkdtempSync(join(tmpdir(), 'sphana-fuzz-'));
  const rows: string[] = [`1-minute load average at start: ${loadavg()[0].toFixed(1)} (other jobs may share the machine; times are indicative, RSS is not affected).`, ''];
  const failures: string[] = [];
  try {
    cpSync(fixtures, work, { recursive: true, verbatimSymlinks: true });
    const worker = join(root, 'dist/bench/fuzz-worker.js');
    const run = measure(process.execPath, [worker, work, String(seed), String(count)]);
    const last = run.stdout.trim().split('\n').pop() ?? '';
    const result = JSON.parse(last) as {
      count: number; files: number; seconds: number; slowestMs: number;
      byKind: Record<string, { summary: number; typed: number; bug: number }>; codes: Record<string, number>;
      bugs: Array<{ file: string; kind: string; message: string }>;
    };
    const bugs = Object.values(result.byKind).reduce((n, r) => n + r.bug, 0);
    if (bugs) failures.push(`${bugs} mutants gave an untyped error: ${JSON.stringify(result.bugs.slice(0, 3))}`);
    if (run.peakRssBytes > 300 * 2 ** 20) failures.push(`peak RSS ${MB(run.peakRssBytes)} > 300 MB`);
    if (run.exitCode !== 0) failures.push(`worker exit status ${run.exitCode}`);
    rows.push(`In-process: ${result.count} mutants of ${result.files} fixtures (seed ${seed}) in ${result.seconds.toFixed(1)} s ` +
      `(${(result.count / result.seconds).toFixed(0)}/s; wall with start-up ${run.seconds.toFixed(1)} s); slowest mutant ${result.slowestMs.toFixed(0)} ms; ` +
      `peak RSS ${MB(run.peakRssBytes)}; untyped errors: ${bugs}.`, '');
    rows.push('| mutation | mutants | summary | typed error | untyped (bug) |', '|---|---|---|---|---|');
    for (const kind of MUTATION_KINDS) {
      const r = result.byKind[kind] ?? { summary: 0, typed: 0, bug: 0 };
      rows.push(`| ${kind} | ${r.summary + r.typed + r.bug} | ${r.summary} | ${r.typed} | ${r.bug} |`);
    }
    rows.push('', `Typed errors by code: ${Object.entries(result.codes).sort().map(([c, n]) => `${c} ${n}`).join(', ')}.`, '');

    // The real CLI on a sample: exit 0 or 3, stderr without a stack trace.
    const random = rng(seed + 1);
    const originals = ['valid/mlp.onnx', 'valid/control_flow.onnx', 'valid/kv_optimum.onnx', 'valid/ext_offset/model.onnx', 'hostile/pb_first_graph/model.onnx', 'valid/pb_fields.onnx']
      .map((f) => join(work, f));
    const { readFileSync } = await import('node:fs');
    const bytes = originals.map((f) => readFileSync(f));
    const exits: Record<string, number> = {};
    const started = performance.now();
    let stackTraces = 0;
    for (let i = 0; i < cliCount; i++) {
      const a = Math.floor(random() * originals.length);
      const path = join(work, originals[a].slice(work.length + 1).replace(/[^/]+$/, 'mutant-cli.onnx'));
      writeFileSync(path, mutate(bytes[a], bytes[Math.floor(random() * bytes.length)], MUTATION_KINDS[i % MUTATION_KINDS.length], random));
      const r = spawnSync(process.execPath, [bin, 'inspect', path], { encoding: 'utf8', timeout: 60_000 });
      const key = r.status === null ? `signal ${r.signal}` : String(r.status);
      exits[key] = (exits[key] ?? 0) + 1;
      if (/\n\s+at /.test(r.stderr) || /internal error/.test(r.stderr)) stackTraces += 1;
    }
    const cliSeconds = (performance.now() - started) / 1000;
    const badExits = Object.keys(exits).filter((k) => k !== '0' && k !== '3');
    if (badExits.length || stackTraces) failures.push(`CLI: exits ${JSON.stringify(exits)}, ${stackTraces} stack traces`);
    rows.push(`CLI: ${cliCount} mutants through \`sphana inspect\` in ${cliSeconds.toFixed(1)} s; exit statuses ${Object.entries(exits).map(([k, n]) => `${k}: ${n}`).join(', ')}; stack traces: ${stackTraces}.`, '');

    // Bounded work: 5 M empty nodes in a 10 MB file.
    const nodes = 5_000_000;
    const graph = Buffer.alloc(nodes * 2);
    for (let i = 0; i < nodes; i++) graph[i * 2] = 0x0a;
    const lengthVarint: number[] = [];
    for (let n = graph.length; ; n = Math.floor(n / 128)) { if (n < 128) { lengthVarint.push(n); break; } lengthVarint.push((n % 128) | 128); }
    const big = join(work, 'empty-nodes-5m.onnx');
    writeFileSync(big, Buffer.concat([Buffer.from([0x08, 0x0a, 0x3a, ...lengthVarint]), graph]));
    rows.push('Bounded work: a 10,000,007-byte file of 5,000,000 empty nodes.', '', '| build | exit | error | seconds | peak RSS |', '|---|---|---|---|---|');
    const builds: Array<[string, string]> = [['this branch (count caps)', bin]];
    const baseline = process.env.SPHANA_FUZZ_BASELINE_BIN;
    if (baseline && existsSync(baseline)) builds.push(['before (no caps)', baseline]);
    for (const [label, cli] of builds) {
      const m = measure(process.execPath, [cli, 'inspect', '--json', big]);
      const code = /"code":"([A-Z_]+)"/.exec(m.stdout)?.[1] ?? '-';
      rows.push(`| ${label} | ${m.exitCode} | ${code} | ${m.seconds.toFixed(2)} | ${MB(m.peakRssBytes)} |`);
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  rows.push('', failures.length ? `FAILED: ${failures.join('; ')}` : 'Every mutant gave a summary or a typed error; no hang; peak RSS within 300 MB.');
  if (failures.length) process.exitCode = 1;
  return rows;
}
