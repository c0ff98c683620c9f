import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Manifest } from '../../src/manifest/schema.js';
import { inspectFile } from '../../src/onnx/summary.js';
import { sphana } from '../helpers/cli.js';

/** An artifact whose models live in external data (a lowered protobuf limit), deployed per precision. */
let root: string;
let artifact: string;
const sha = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

before(() => {
  root = mkdtempSync(join(tmpdir(), 'sphana-deploy-'));
  const r = sphana(['export', 'smollm2-135m', '--synthetic', 'tiny', '--out', root, '--json'], { SPHANA_PROTO_LIMIT_BYTES: '60000' });
  assert.equal(r.exitCode, 0, r.stderr);
  artifact = join(root, '0.1.0');
});
after(() => rmSync(root, { recursive: true, force: true }));

test('over the (lowered) protobuf limit, the export writes one external data file and verification still passes', () => {
  const m = JSON.parse(readFileSync(join(artifact, 'manifest.json'), 'utf8')) as Manifest;
  const fp32 = m.models.find((x) => x.precision === 'fp32')!;
  assert.deepEqual(fp32.externalData, ['onnx/llm_generator.onnx.data']);
  assert.equal(m.files.find((f) => f.path === 'onnx/llm_generator.onnx.data')?.role, 'model-data');
  assert.equal((m.verification as { ok: boolean }).ok, true);
  assert.equal(m.quantization?.strategy !== 'direct', true);
});

for (const precision of ['int8', 'fp32'] as const) {
  test(`deploy ${precision}: llm_generator.onnx with valid external data, checksums verified, manifest rewritten`, () => {
    const to = join(root, `consumer-${precision}`);
    const r = sphana(['deploy', artifact, '--to', to, '--precision', precision, '--json']);
    assert.equal(r.exitCode, 0, r.stderr);
    const names = readdirSync(to).sort();
    assert.ok(names.includes('llm_generator.onnx') && names.includes('manifest.json') && names.includes('tokenizer.json'), names.join(','));
    assert.equal(names.filter((n) => n.endsWith('.onnx')).length, 1);
    const deployed = inspectFile(join(to, 'llm_generator.onnx'));
    assert.equal(deployed.problems.length, 0, JSON.stringify(deployed.externalDataFiles));
    assert.ok(deployed.externalDataFiles.length >= (precision === 'fp32' ? 1 : 0));
    const m = JSON.parse(readFileSync(join(to, 'manifest.json'), 'utf8')) as Manifest;
    assert.deepEqual(m.models.map((x) => [x.precision, x.path]), [[precision, 'llm_generator.onnx']]);
    for (const f of m.files) assert.equal(sha(join(to, f.path)), f.sha256, f.path);
    const genai = JSON.parse(readFileSync(join(to, 'genai_config.json'), 'utf8')) as { model: { decoder: { filename: string } } };
    assert.equal(genai.model.decoder.filename, 'llm_generator.onnx');
    assert.deepEqual(readdirSync(root).filter((n) => n.startsWith('.sphana-deploy')), []);
  });
}

test('deploy refuses a tampered artifact and leaves no half-copied folder', () => {
  const m = JSON.parse(readFileSync(join(artifact, 'manifest.json'), 'utf8')) as Manifest;
  const tokenizer = join(artifact, m.tokenizer.files[0]);
  const original = readFileSync(tokenizer);
  writeFileSync(tokenizer, Buffer.concat([original.subarray(0, original.length - 2), Buffer.from('}}')]).toString().replace(/"/, "'"));
  try {
    const to = join(root, 'consumer-tampered');
    const r = sphana(['deploy', artifact, '--to', to, '--precision', 'int8']);
    assert.equal(r.exitCode, 1);
    assert.match(r.stderr, /error E_COPY_MISMATCH: onnx\/tokenizer\.json: the copy's sha256/);
    assert.equal(existsSync(to), false);
    assert.deepEqual(readdirSync(root).filter((n) => n.startsWith('.sphana-deploy')), []);
  } finally {
    writeFileSync(tokenizer, original);
  }
});

test('deploy: a precision the artifact lacks, or an existing target, is bad input', () => {
  const r = sphana(['deploy', artifact, '--to', join(root, 'c4'), '--precision', 'int4']);
  assert.equal(r.exitCode, 3);
  assert.match(r.stderr, /E_NO_SUCH_PRECISION: .* has no int4 model \(it has fp32, int8\)/);
  const again = sphana(['deploy', artifact, '--to', join(root, 'consumer-int8')]);
  assert.equal(again.exitCode, 3);
  assert.match(again.stderr, /E_OUTPUT_EXISTS/);
});
