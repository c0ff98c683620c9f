import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { inspectFile } from '../../src/onnx/summary.js';
import { requirementsHash } from '../../src/python/paths.js';
import { BIN } from '../helpers/paths.js';
import { sphana } from '../helpers/cli.js';
import { buildTinyLlm } from '../helpers/tiny-llm.js';

let dir: string;
let tied: string;
let untied: string;
let big: string;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'sphana-quantize-'));
  tied = buildTinyLlm(join(dir, 'tied.onnx'), ['--tied']);
  untied = buildTinyLlm(join(dir, 'untied.onnx'));
  big = buildTinyLlm(join(dir, 'big.onnx'), ['--tied', '--vocab', '32000', '--hidden', '512', '--layers', '6', '--heads', '8', '--kv-heads', '2', '--head-dim', '64']);
});
after(() => rmSync(dir, { recursive: true, force: true }));

interface Report {
  strategy: string;
  files: Array<{ path: string; bytes: number }>;
  attempts: Array<{ strategy: string; ok: boolean; error?: { class: string; message: string } }>;
  quantizedOps: Record<string, number>;
  agreement: { top1Agreement: number; meanCosine: number; positions: number };
}

function quantize(args: string[], env: NodeJS.ProcessEnv = {}): { exitCode: number; report?: Report; stderr: string } {
  const r = sphana(['quantize', '--json', '--force', ...args], env);
  return { exitCode: r.exitCode, stderr: r.stderr, report: r.exitCode === 0 ? (JSON.parse(r.stdout) as Report) : undefined };
}

function assertGood(report: Report, strategy: string): void {
  assert.equal(report.strategy, strategy);
  assert.ok(report.agreement.positions >= 16);
  assert.ok(report.agreement.top1Agreement >= 0.9, `top-1 ${report.agreement.top1Agreement}`);
  assert.ok(report.agreement.meanCosine >= 0.99, `cosine ${report.agreement.meanCosine}`);
  const out = inspectFile(report.files[0].path);
  assert.equal(out.quantization.floatConstantMatMuls.length, 0);
  assert.ok(out.quantization.quantized);
  assert.deepEqual(out.kvCache, inspectFile(report.files[0].path.replace(/\.int8\.onnx$/, '.onnx').replace(/\.(direct|ext|split)$/, '')).kvCache);
}

for (const strategy of ['direct', 'external-data', 'embedding-split'] as const) {
  test(`forced ${strategy} on the untied model: runs in onnxruntime-node and agrees with fp32`, () => {
    const r = quantize([untied, '--strategy', strategy, '-o', join(dir, `untied.${strategy}.int8.onnx`)]);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.report!.strategy, strategy);
    assert.deepEqual(r.report!.attempts.map((a) => a.strategy), [strategy]);
    assert.ok(r.report!.agreement.top1Agreement >= 0.9 && r.report!.agreement.meanCosine >= 0.99, JSON.stringify(r.report!.agreement));
    assert.ok((r.report!.quantizedOps.MatMulInteger ?? 0) >= 14, JSON.stringify(r.report!.quantizedOps));
    const names = r.report!.files.map((f) => f.path.split('/').pop());
    if (strategy === 'external-data') assert.deepEqual(names, [`untied.${strategy}.int8.onnx`, `untied.${strategy}.int8.onnx.data`]);
    else assert.equal(names[0], `untied.${strategy}.int8.onnx`);
  });
}

test('auto on a tied model falls through to embedding-split, and says why the others failed', () => {
  const r = quantize([tied]);
  assert.equal(r.exitCode, 0, r.stderr);
  assertGood(r.report!, 'embedding-split');
  assert.deepEqual(r.report!.attempts.map((a) => [a.strategy, a.ok]), [['direct', false], ['external-data', false], ['embedding-split', true]]);
  assert.match(r.report!.attempts[0].error!.message, /constant weight left in float/);
});

test('auto with a lowered protobuf limit falls through to external-data', () => {
  const r = quantize([untied, '-o', join(dir, 'untied.limit.int8.onnx')], { SPHANA_PROTO_LIMIT_BYTES: '100000' });
  assert.equal(r.exitCode, 0, r.stderr);
  assert.equal(r.report!.strategy, 'external-data');
  assert.equal(r.report!.attempts[0].error!.class, 'ProtoLimitExceeded');
  assert.equal(r.report!.files.length, 2);
  assert.ok(r.report!.files[1].bytes > 100000);
});

test('a forced strategy that cannot work fails with every attempt listed and exit 1', () => {
  const r = quantize([tied, '--strategy', 'direct', '-o', join(dir, 'never.int8.onnx')]);
  assert.equal(r.exitCode, 1);
  assert.match(r.stderr, /E_QUANTIZE_FAILED: every strategy failed: direct: Rejected: .*constant weight/);
  assert.equal(existsSync(join(dir, 'never.int8.onnx')), false);
});

test('int4 produces MatMulNBits and still agrees', () => {
  const r = quantize([untied, '--precision', 'int4', '-o', join(dir, 'untied.int4.onnx')]);
  assert.equal(r.exitCode, 0, r.stderr);
  assert.ok((r.report!.quantizedOps['com.microsoft.MatMulNBits'] ?? 0) >= 14, JSON.stringify(r.report!.quantizedOps));
  assert.ok(r.report!.agreement.meanCosine >= 0.95, JSON.stringify(r.report!.agreement));
});

test('an existing output is kept without --force', () => {
  const out = join(dir, 'exists.int8.onnx');
  writeFileSync(out, 'keep me');
  const r = sphana(['quantize', untied, '-o', out]);
  assert.equal(r.exitCode, 3);
  assert.match(r.stderr, /E_OUTPUT_EXISTS/);
});

test('a corrupt input gives a one-line error and exit 3', () => {
  const bad = join(dir, 'corrupt.onnx');
  writeFileSync(bad, Buffer.from([0x3a, 0xff, 0xff, 0xff, 0x0f, 1, 2, 3]));
  const r = sphana(['quantize', bad]);
  assert.equal(r.exitCode, 3);
  assert.match(r.stderr.split('\n')[0], /^error E_TRUNCATED: .*corrupt\.onnx: truncated/);
});

test('a missing Python gives E_NO_PYTHON and exit 4', () => {
  const cache = mkdtempSync(join(tmpdir(), 'sphana-nopy-'));
  const r = sphana(['quantize', untied, '-o', join(dir, 'nopy.int8.onnx')], { SPHANA_CACHE_DIR: cache, SPHANA_PYTHON: join(cache, 'no-python-here') });
  rmSync(cache, { recursive: true, force: true });
  assert.equal(r.exitCode, 4, r.stderr);
  assert.match(r.stderr, /error E_NO_PYTHON: /);
});

test('a broken bridge environment gives a one-line environment error and exit 4', () => {
  const cache = mkdtempSync(join(tmpdir(), 'sphana-broken-'));
  const hash = requirementsHash();
  const venv = join(cache, `python-${hash}`);
  mkdirSync(join(venv, 'bin'), { recursive: true });
  writeFileSync(join(venv, '.sphana-complete.json'), JSON.stringify({ requirementsHash: hash, basePython: 'x', pythonVersion: '3.11.7', createdAt: 'now' }));
  writeFileSync(join(venv, 'bin', 'python'), '#!/bin/sh\ncase "$*" in *sphana_bridge*) echo "ModuleNotFoundError: No module named onnx" >&2; exit 1;; esac\nexit 0\n');
  chmodSync(join(venv, 'bin', 'python'), 0o755);
  const r = sphana(['quantize', untied, '-o', join(dir, 'broken.int8.onnx')], { SPHANA_CACHE_DIR: cache });
  rmSync(cache, { recursive: true, force: true });
  assert.equal(r.exitCode, 4, r.stderr);
  assert.match(r.stderr, /^error E_BRIDGE_\w+: /m);
  assert.match(r.stderr, /ModuleNotFoundError/);
});

test('Ctrl-C during quantization leaves no partial output and no orphan Python process', async () => {
  const out = join(dir, 'interrupted.int8.onnx');
  const child = spawn(process.execPath, [BIN, 'quantize', big, '-o', out, '--strategy', 'embedding-split'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  const exited = new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
  await new Promise<void>((resolve, reject) => {
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (stderr.includes('> quantize')) resolve();
    });
    void exited.then((c) => reject(new Error(`exited ${c} before starting: ${stderr}`)));
  });
  await new Promise((r) => setTimeout(r, 300));
  child.kill('SIGINT');
  const code = await exited;
  assert.equal(code, 130, stderr);
  assert.equal(existsSync(out), false);
  assert.deepEqual(readdirSync(dir).filter((n) => n.startsWith('.sphana') || n.startsWith('interrupted')), []);
  const { execSync } = await import('node:child_process');
  const left = execSync(`ps -eo pid,args | grep -F '${big}' | grep sphana_bridge | grep -v grep || true`, { encoding: 'utf8' });
  assert.equal(left.trim(), '');
});
