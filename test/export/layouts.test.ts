import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { inspectFile } from '../../src/onnx/summary.js';
import { DecoderRunner } from '../../src/runtime/decoder.js';
import { openSession } from '../../src/runtime/onnxruntime.js';
import { sphana } from '../helpers/cli.js';
import { ROOT, testPython } from '../helpers/paths.js';

/**
 * Consumer layouts, loaded by the real clients: transformers.js (@huggingface/transformers, a
 * devDependency) generates greedily from `--layout transformers.js` in fp32 and INT8, and
 * onnxruntime-genai (PyPI, in a test-only folder) from `--layout genai`; both must produce the
 * tokens of sphana's own decode loop (src/runtime/decoder.ts) on the same prompt ids.
 */
const MODELS = ['llama-3.2-1b', 'qwen2.5-0.5b'] as const;
const PRECISIONS = ['fp32', 'int8'] as const;
const NEW_TOKENS = 8;
let root: string;
const artifacts: Record<string, string> = {};

before(() => {
  root = mkdtempSync(join(tmpdir(), 'sphana-layouts-'));
  for (const model of MODELS) {
    const r = sphana(['export', model, '--synthetic', 'tiny', '--out', join(root, model), '--no-verify', '--json']);
    assert.equal(r.exitCode, 0, r.stderr);
    artifacts[model] = join(root, model, '0.1.0');
  }
});
after(() => rmSync(root, { recursive: true, force: true }));

const eosOf = (dir: string): number[] => (JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as { tokenizer: { eosTokenIds: number[] } }).tokenizer.eosTokenIds;
/** Greedy tokens up to and including the first EOS (every client stops there). */
const untilEos = (tokens: number[], eos: number[]) => {
  const i = tokens.findIndex((t) => eos.includes(t));
  return i < 0 ? tokens : tokens.slice(0, i + 1);
};

async function sphanaGreedy(modelPath: string, prompt: number[]): Promise<number[]> {
  const session = await openSession(modelPath, { threads: 1 });
  try {
    const summary = inspectFile(modelPath);
    return (await new DecoderRunner(session, summary.kvCache!).greedy(prompt, NEW_TOKENS)).tokens;
  } finally {
    await session.release();
  }
}

/** transformers.js in a child process (its own onnxruntime-node session), printing prompt ids and generated ids. */
function transformersJs(folder: string, dtype: string): { prompt: number[]; tokens: number[] } {
  const script = `
    const { AutoModelForCausalLM, AutoTokenizer, env } = await import('@huggingface/transformers');
    env.allowRemoteModels = false;
    env.localModelPath = ${JSON.stringify(join(folder, '..'))} + '/';
    const name = ${JSON.stringify(folder.split('/').pop())};
    const tokenizer = await AutoTokenizer.from_pretrained(name, { local_files_only: true });
    const model = await AutoModelForCausalLM.from_pretrained(name, { dtype: ${JSON.stringify(dtype)}, local_files_only: true, device: 'cpu' });
    const inputs = tokenizer('The capital of France is', { add_special_tokens: false });
    const out = await model.generate({ ...inputs, max_new_tokens: ${NEW_TOKENS}, do_sample: false, repetition_penalty: 1.0 });
    const prompt = Array.from(inputs.input_ids.data, Number);
    const all = Array.from(out.data, Number);
    process.stdout.write(JSON.stringify({ prompt, tokens: all.slice(prompt.length) }));
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT, encoding: 'utf8', maxBuffer: 1 << 26 });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as { prompt: number[]; tokens: number[] };
}

for (const model of MODELS) {
  for (const precision of PRECISIONS) {
    test(`transformers.js loads ${model} ${precision} from --layout transformers.js and generates sphana's greedy tokens`, async () => {
      const to = join(root, `tjs-${model}-${precision}`);
      const r = sphana(['deploy', artifacts[model], '--to', to, '--precision', precision, '--layout', 'transformers.js', '--allow-unverified', '--json']);
      assert.equal(r.exitCode, 0, r.stderr);
      assert.ok(existsSync(join(to, 'onnx/model.onnx')) && existsSync(join(to, 'onnx/model_int8.onnx')), readdirSync(join(to, 'onnx')).join(','));
      for (const f of ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'manifest.json']) assert.ok(existsSync(join(to, f)), f);
      const config = JSON.parse(readFileSync(join(to, 'config.json'), 'utf8')) as Record<string, { dtype?: string }>;
      assert.equal(config['transformers.js_config']?.dtype, precision);
      const got = transformersJs(to, precision);
      assert.ok(got.prompt.length >= 3, `prompt ids ${got.prompt}`);
      const ours = await sphanaGreedy(join(to, precision === 'fp32' ? 'onnx/model.onnx' : 'onnx/model_int8.onnx'), got.prompt);
      const eos = eosOf(artifacts[model]);
      assert.ok(got.tokens.length >= 1);
      assert.deepEqual(got.tokens, untilEos(ours, eos), `transformers.js ${got.tokens} vs sphana ${ours}`);
    });
  }
}

test('transformers.js loads a model whose weights are in external data (a lowered protobuf limit), keeping the data file\'s name', async () => {
  const out = join(root, 'smollm2-external');
  const e = sphana(['export', 'smollm2-135m', '--synthetic', 'tiny', '--out', out, '--no-verify', '--json'], { SPHANA_PROTO_LIMIT_BYTES: '60000' });
  assert.equal(e.exitCode, 0, e.stderr);
  for (const precision of PRECISIONS) {
    const to = join(root, `tjs-external-${precision}`);
    const r = sphana(['deploy', join(out, '0.1.0'), '--to', to, '--precision', precision, '--layout', 'transformers.js', '--allow-unverified', '--json']);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.ok(existsSync(join(to, 'onnx/llm_generator.onnx.data')), readdirSync(join(to, 'onnx')).join(','));
    const model = inspectFile(join(to, 'onnx/model.onnx'));
    assert.deepEqual(model.externalDataFiles.map((f) => [f.location, f.status]), [['llm_generator.onnx.data', 'ok']]);
    const config = JSON.parse(readFileSync(join(to, 'config.json'), 'utf8')) as Record<string, { use_external_data_format?: boolean }>;
    assert.equal(config['transformers.js_config']?.use_external_data_format, false);
    const got = transformersJs(to, precision);
    const ours = await sphanaGreedy(join(to, precision === 'fp32' ? 'onnx/model.onnx' : 'onnx/model_int8.onnx'), got.prompt);
    assert.deepEqual(got.tokens, untilEos(ours, eosOf(join(out, '0.1.0'))), `${precision}: transformers.js ${got.tokens} vs sphana ${ours}`);
  }
});

/** onnxruntime-genai from PyPI in a test-only folder (pip --target, never the bridge env); null when it cannot be installed. */
function genaiPath(): string | null {
  const target = join(process.env.SPHANA_CACHE_DIR ?? join(process.env.HOME ?? tmpdir(), '.cache/sphana'), 'test-onnxruntime-genai-0.18.0');
  const probe = () => spawnSync(testPython(), ['-c', 'import onnxruntime_genai'], { env: { ...process.env, PYTHONPATH: target }, encoding: 'utf8' }).status === 0;
  if (existsSync(target) && probe()) return target;
  const r = spawnSync(testPython(), ['-m', 'pip', 'install', '--quiet', '--disable-pip-version-check', '--no-deps', '--target', `${target}.tmp`, 'onnxruntime-genai==0.18.0'], { encoding: 'utf8', timeout: 600_000 });
  if (r.status !== 0) {
    rmSync(`${target}.tmp`, { recursive: true, force: true });
    return null;
  }
  rmSync(target, { recursive: true, force: true });
  spawnSync('mv', [`${target}.tmp`, target]);
  return probe() ? target : null;
}

const GENAI_SCRIPT = `
import json, sys
import onnxruntime_genai as og
folder, prompt, n = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
model = og.Model(folder)
params = og.GeneratorParams(model)
params.set_search_options(do_sample=False, max_length=len(prompt) + n, repetition_penalty=1.0)
gen = og.Generator(model, params)
gen.append_tokens(prompt)
out = []
while not gen.is_done() and len(out) < n:
    gen.generate_next_token()
    out.append(int(gen.get_next_tokens()[0]))
print(json.dumps(out))
`;

test('onnxruntime-genai generates from --layout genai the tokens of sphana\'s decode loop', async (t) => {
  const path = genaiPath();
  if (!path) {
    t.skip('onnxruntime-genai==0.18.0 could not be installed from PyPI (offline?): the genai layout is not loaded by its client in this run');
    return;
  }
  for (const model of MODELS) {
    for (const precision of PRECISIONS) {
      const to = join(root, `genai-${model}-${precision}`);
      const r = sphana(['deploy', artifacts[model], '--to', to, '--precision', precision, '--layout', 'genai', '--allow-unverified', '--json']);
      assert.equal(r.exitCode, 0, r.stderr);
      const genai = JSON.parse(readFileSync(join(to, 'genai_config.json'), 'utf8')) as { model: { decoder: { filename: string } } };
      const file = genai.model.decoder.filename;
      assert.equal(file, precision === 'fp32' ? 'llm_generator.onnx' : 'llm_generator.int8.onnx');
      const prompt = [3, 17, 42, 7, 99];
      const ours = untilEos(await sphanaGreedy(join(to, file), prompt), eosOf(artifacts[model]));
      const g: { status: number | null; stdout: string; stderr: string } = spawnSync(testPython(), ['-c', GENAI_SCRIPT, to, JSON.stringify(prompt), String(NEW_TOKENS)], { env: { ...process.env, PYTHONPATH: path }, encoding: 'utf8' });
      assert.equal(g.status, 0, g.stderr);
      assert.deepEqual(JSON.parse(g.stdout), ours, `${model} ${precision}`);
    }
  }
});

test('export --dry-run after a finished export plans to skip every step (its fingerprints are the pipeline\'s), and a new precision reruns quantize only', () => {
  const args = ['export', 'llama-3.2-1b', '--synthetic', 'tiny', '--out', join(root, 'llama-3.2-1b'), '--no-verify', '--dry-run', '--json'];
  const same = sphana(args);
  assert.equal(same.exitCode, 0, same.stderr);
  const plan = JSON.parse(same.stdout) as { steps: Array<{ step: string; action: string }> };
  assert.deepEqual(plan.steps.filter((s) => s.action === 'run').map((s) => s.step), ['manifest']);
  const int4 = JSON.parse(sphana([...args, '--precision', 'int4']).stdout) as { steps: Array<{ step: string; action: string }> };
  assert.deepEqual(int4.steps.filter((s) => s.action === 'run').map((s) => s.step), ['quantize', 'manifest']);
});
