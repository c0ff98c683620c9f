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
  setting: string;
  settings: Record<string, string | number | boolean>;
  head: { tied: boolean; bits: number; accuracyLevel: number; quantized: boolean } | null;
  speed: { candidate: number; fp32: number; ratio: number; seconds: number } | null;
  slowerThanFp32: boolean;
  files: Array<{ path: string; bytes: number }>;
  attempts: Array<{ strategy: string; setting?: string; ok: boolean; bytes?: number; error?: { class: string; message: string }; agreement?: { top1Agreement: number } }>;
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

const BODY = 7 * 2; // q k v o gate up down × 2 layers of the tiny model
const WEIGHT_ONLY_OPS = { 'com.microsoft.GatherBlockQuantized': 1, 'com.microsoft.MatMulNBits': BODY + 1 };

for (const strategy of ['direct', 'external-data', 'embedding-split'] as const) {
  test(`forced ${strategy} on the untied model: weight-only 8-bit, head and embedding included, agrees with fp32`, () => {
    const r = quantize([untied, '--strategy', strategy, '-o', join(dir, `untied.${strategy}.int8.onnx`)]);
    assert.equal(r.exitCode, 0, r.stderr);
    const rep = r.report!;
    assert.equal(rep.strategy, strategy);
    assert.deepEqual(rep.attempts.map((a) => [a.setting, a.strategy, a.ok]), [['weight-only level 4', strategy, true]]);
    assert.ok(rep.agreement.top1Agreement >= 0.95 && rep.agreement.meanCosine >= 0.999, JSON.stringify(rep.agreement));
    assert.deepEqual(rep.quantizedOps, WEIGHT_ONLY_OPS);
    assert.deepEqual(rep.settings, { scheme: 'weight-only', bits: 8, blockSize: 32, accuracyLevel: 4, headAccuracyLevel: 4, embeddingBits: 8 });
    assert.deepEqual(rep.head, { tied: false, bits: 8, accuracyLevel: 4, quantized: true });
    // the probe measured both models (figures, not a timing assertion)
    assert.ok(rep.speed && rep.speed.candidate > 0 && rep.speed.fp32 > 0 && Math.abs(rep.speed.ratio - rep.speed.candidate / rep.speed.fp32) < 1e-9);
    const names = rep.files.map((f) => f.path.split('/').pop());
    if (strategy === 'external-data') assert.deepEqual(names, [`untied.${strategy}.int8.onnx`, `untied.${strategy}.int8.onnx.data`]);
    else assert.equal(names[0], `untied.${strategy}.int8.onnx`);
    assert.equal(rep.attempts[0].bytes, rep.files.reduce((n, f) => n + f.bytes, 0));
  });
}

test('auto on a tied model: direct works (the tied head is quantized on the shared 8-bit table), at under a third of fp32', () => {
  const r = quantize([tied]);
  assert.equal(r.exitCode, 0, r.stderr);
  assertGood(r.report!, 'direct');
  assert.deepEqual(r.report!.attempts.map((a) => [a.strategy, a.ok]), [['direct', true]]);
  assert.deepEqual(r.report!.quantizedOps, WEIGHT_ONLY_OPS);
  assert.deepEqual(r.report!.head, { tied: true, bits: 8, accuracyLevel: 4, quantized: true });
  const fp32 = inspectFile(tied);
  const out = inspectFile(r.report!.files[0].path);
  // 1 byte per weight + one f32 scale per 32: about 1.13/4 of the fp32 bytes (small tensors and the graph add a little)
  const ratio = r.report!.files[0].bytes / fp32.fileBytes;
  assert.ok(ratio > 0.25 && ratio < 0.33, `size ratio ${ratio}`);
  assert.deepEqual(out.quantization.weightBits, [8]);
});

test('--int8-scheme dynamic on a tied model falls through to embedding-split, and says why the others failed', () => {
  const r = quantize([tied, '--int8-scheme', 'dynamic', '-o', join(dir, 'tied.int8.onnx')]);
  assert.equal(r.exitCode, 0, r.stderr);
  assertGood(r.report!, 'embedding-split');
  assert.deepEqual(r.report!.attempts.map((a) => [a.setting, a.strategy, a.ok]), [['dynamic', 'direct', false], ['dynamic', 'external-data', false], ['dynamic', 'embedding-split', true]]);
  assert.match(r.report!.attempts[0].error!.message, /constant weight left in float/);
  assert.deepEqual(r.report!.quantizedOps, { DynamicQuantizeLinear: 9, MatMulInteger: BODY + 1 }); // + the int8 table's plain Gather
  assert.equal(r.report!.settings.scheme, 'dynamic');
});

test('--accuracy-level 0 is one setting, recorded in the report', () => {
  const r = quantize([untied, '--accuracy-level', '0', '-o', join(dir, 'untied.l0.int8.onnx')]);
  assert.equal(r.exitCode, 0, r.stderr);
  assert.equal(r.report!.setting, 'weight-only level 0');
  assert.equal(r.report!.settings.accuracyLevel, 0);
  assert.ok(r.report!.agreement.top1Agreement >= 0.95, JSON.stringify(r.report!.agreement));
});

test('bad quantization flags are usage errors (exit 2)', () => {
  for (const args of [['--accuracy-level', '7'], ['--int8-scheme', 'fp8'], ['--per-channel'], ['--block-size', '64'], ['--precision', 'int4', '--int8-scheme', 'dynamic']]) {
    const r = sphana(['quantize', untied, '-o', join(dir, 'flags.int8.onnx'), ...args]);
    assert.equal(r.exitCode, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, /^error E_USAGE/m);
  }
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
  const r = quantize([tied, '--int8-scheme', 'dynamic', '--strategy', 'direct', '-o', join(dir, 'never.int8.onnx')]);
  assert.equal(r.exitCode, 1);
  assert.match(r.stderr, /E_QUANTIZE_FAILED: every setting and strategy failed: dynamic \/ direct: Rejected: .*constant weight/);
  assert.equal(existsSync(join(dir, 'never.int8.onnx')), false);
});

for (const [label, args, zeroPoints] of [['asymmetric blocks of 32', [], true], ['symmetric blocks of 64', ['--symmetric', '--block-size', '64'], false],
  ['float zero points, blocks of 64', ['--int4-algorithm', 'rtn-float-zp', '--block-size', '64'], true]] as const) {
  test(`int4 (${label}) produces 4-bit MatMulNBits with the LM head and embedding at 8 bits, and still agrees`, () => {
    const r = quantize([untied, '--precision', 'int4', ...args, '-o', join(dir, `untied.int4.${zeroPoints}.onnx`)]);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.deepEqual(r.report!.quantizedOps, WEIGHT_ONLY_OPS);
    assert.equal(r.report!.settings.symmetric, !zeroPoints);
    assert.equal(r.report!.settings.blockSize, args.length ? 64 : 32);
    assert.deepEqual(r.report!.head, { tied: false, bits: 8, accuracyLevel: 4, quantized: true });
    assert.deepEqual(inspectFile(r.report!.files[0].path).quantization.weightBits, [4, 8]);
    // rtn-float-zp's block-offset MatMuls (block sums of x times the offsets) belong to its 4-bit weights
    assert.deepEqual(inspectFile(r.report!.files[0].path).quantization.floatConstantMatMuls, []);
    assert.equal(r.report!.settings.algorithm, (args as readonly string[]).includes('rtn-float-zp') ? 'rtn-float-zp' : 'rtn');
    assert.ok(r.report!.agreement.meanCosine >= 0.98, JSON.stringify(r.report!.agreement));
  });
}

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
