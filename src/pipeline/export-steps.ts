/**
 * The export pipeline's steps, each a function of one ExportRun (src/pipeline/export-pipeline.ts
 * runs them in order): weights → export (with its onnxruntime fusions) → quantize → assemble → manifest → verify.
 */
import { copyFileSync, existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { genaiConfig } from '../artifacts/genai-config.js';
import { runTag, sweepOnExit, sweepStaging } from '../cleanup.js';
import { fsyncPath, renameDurable, writeFileAtomic } from '../artifacts/files.js';
import { JobFailedError } from '../errors.js';
import { MODEL_SUBDIR, type ManifestInput, writeManifest } from '../manifest/build.js';
import type { Manifest, ManifestOptimization, Precision } from '../manifest/schema.js';
import { describeArchitecture, type HfConfig } from '../models/index.js';
import { type ExportResult, bridgeExport, bridgeVersions } from '../python/entry-points.js';
import type { BridgeEnvironment } from '../python/environment.js';
import { type QuantizeReport, protoLimitBytes, quantizeModel } from '../quantize/run.js';
import { onnxruntimeVersion } from '../runtime/onnxruntime.js';
import { readJson, readTokenizerFacts } from '../tokenizer/special-tokens.js';
import { progressText } from '../progress.js';
import { sphanaVersion } from '../version.js';
import { verifyArtifacts } from '../verify/index.js';
import { DEFAULT_OPTIMIZE, type OptimizeMode } from '../vocabulary.js';
import { environmentStep } from './environment-step.js';
import type { ExportOptions, ExportSummary } from './export-pipeline.js';
import { type GgufConversion, convertGguf } from './gguf-weights.js';
import { type ModelSource, resolveSource, synthesizeWeights } from './source.js';
import { StateStore } from './state.js';
import { type StepPrints, exportFacts, exportInputDir, stepPrints } from './step-prints.js';
import { StepRunner } from './step-runner.js';

export const MODEL_FILE = 'llm_generator.onnx';
const COPIED = ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer.model', 'tokenizer_config.json', 'special_tokens_map.json'];

/** One export run: its folders, its resume state and step runner, its model source and the bridge. */
export interface ExportRun {
  options: ExportOptions;
  dir: string;
  onnxDir: string;
  workDir: string;
  state: StateStore;
  steps: StepRunner;
  source: ModelSource;
  prints: StepPrints;
  optimize: OptimizeMode;
  /** The fp32 model of the artifact (fused with --optimize ort, when the fusions passed the gate). */
  modelPath: string;
  quantPath: string;
  bridge(): Promise<BridgeEnvironment>;
  /** The tool versions the manifest records (the bridge's `versions`, asked once, while the first steps run). */
  tools(): Promise<Record<string, string>>;
  /** The Hugging Face folder to export from (the source's, or the work folder's once converted or synthesized). */
  hfDir(): string;
  /** The GGUF conversion's result, once known. */
  converted?: GgufConversion;
}

export async function startRun(options: ExportOptions, dir: string): Promise<ExportRun> {
  const onnxDir = join(dir, MODEL_SUBDIR);
  const workDir = join(dir, '.sphana-work');
  mkdirSync(onnxDir, { recursive: true });
  const state = new StateStore(dir);
  const { events } = options;
  const steps = new StepRunner(dir, state, events, options.force);
  const source = await resolveSource({ ...options, onProgress: (m) => events.progress('weights', m) });
  let env: BridgeEnvironment | undefined;
  const bridge = async () => (env ??= await environmentStep(events, { signal: options.signal, record: (seconds) => steps.timings.push({ step: 'environment', seconds, skipped: false }) }));
  await bridge(); // every run needs it (at least for the tool versions); its own step, before the others' spinners
  let versions: Promise<Record<string, string>> | undefined;
  const tools = () => (versions ??= bridge().then((e) => toolVersions(e, options.signal)));
  // asked now, beside the export (a short Python process); a failure surfaces where the manifest awaits it
  tools().catch(() => {});
  const optimize = options.optimize ?? DEFAULT_OPTIMIZE;
  const modelPath = join(onnxDir, MODEL_FILE);
  const hfDir = () => exportInputDir(source.dir, dir);
  return {
    options, dir, onnxDir, workDir, state, steps, source, prints: printsOf(options, source, optimize, hfDir()), optimize, bridge, tools,
    hfDir,
    modelPath,
    quantPath: join(onnxDir, MODEL_FILE.replace(/\.onnx$/, `.${options.precision}.onnx`)),
  };
}

/** The run's step fingerprints; the export's includes the facts of the folder it reads, once that folder exists. */
function printsOf(options: ExportOptions, source: ModelSource, optimize: OptimizeMode, hfDir: string): StepPrints {
  return stepPrints({
    identity: source.identity, exporter: options.exporter, optimize, precision: options.precision, strategy: options.strategy,
    quant: options.quant, architecture: exportFacts(hfDir),
  });
}

/** The `weights` step (GGUF → fp32 folder, or synthetic weights), run only when a step that needs the weights has to run. */
export async function prepareWeights(run: ExportRun): Promise<void> {
  const { options, state, source, workDir, prints } = run;
  const hf = join(workDir, 'hf');
  const outputs = () => readdirSync(hf).filter((f) => !f.startsWith('.')).map((f) => join(hf, f));
  const progress = { signal: options.signal, onProgress: (m: string) => options.events.progress('weights', m) };
  const ensureWeights = async () => {
    if (source.gguf) {
      const { path, file } = source.gguf;
      run.converted = await run.steps.run<GgufConversion>('weights', `convert ${file} → fp32 Hugging Face folder`, prints.weights, outputs, async () => {
        const result = await convertGguf(path, file, hf, await run.bridge(), progress);
        return { result, detail: `${result.gguf.architecture} ${result.gguf.fileType ?? ''} (${result.gguf.quantizationTypes.join(', ')}) → ${result.architectures.join(', ')}` };
      });
      source.dir = hf;
      return;
    }
    if (!source.synthetic) return;
    await run.steps.run('weights', `synthesize ${source.synthetic} ${source.preset!.name} weights`, prints.weights, outputs, async () => {
      await synthesizeWeights(source, hf, await run.bridge(), options.seed, progress);
      return { result: { dir: hf } };
    });
    source.dir = hf;
  };
  if (source.synthetic && existsSync(join(hf, 'config.json'))) source.dir = hf;
  if (options.force || !state.upToDate('export', prints.export) || !state.upToDate('assemble', prints.assemble)) await ensureWeights();
  run.prints = printsOf(options, source, run.optimize, run.hfDir()); // the weights' folder may exist only now: its facts enter the export's fingerprint
  if (source.gguf) {
    // The file's facts go into the manifest even when every step that needs the weights is up to date.
    run.converted ??= state.resultOf('weights', prints.weights) as GgufConversion | undefined;
    if (!run.converted) await ensureWeights();
    source.manifestSource = { ...source.manifestSource, gguf: run.converted!.gguf };
  }
}

/**
 * The `export` step: the bridge's export with KV cache, gated on parity with PyTorch; with --optimize ort
 * the graph gets onnxruntime's fusions in the same bridge call (a fused template layer stamped per layer,
 * gated against the same PyTorch reference; the unfused graph when they fail, and the manifest says why).
 */
export function exportStep(run: ExportRun): Promise<ExportResult> {
  const { options, modelPath: exportPath } = run;
  const fusions = run.optimize === 'none' ? '' : `, ${run.optimize} fusions`;
  return run.steps.run<ExportResult>('export', `export ${options.exporter} with KV cache${fusions} + parity gate`, run.prints.export,
    () => [exportPath, `${exportPath}.data`].filter(existsSync),
    async () => {
      for (const f of [exportPath, `${exportPath}.data`]) rmSync(f, { force: true });
      mkdirSync(dirname(exportPath), { recursive: true });
      sweepStaging(dirname(exportPath));
      const unsweep = sweepOnExit(dirname(exportPath));
      const result = await bridgeExport(await run.bridge(), {
        modelDir: run.hfDir(), output: exportPath, architecture: exportFacts(run.hfDir(), true)!, exporter: options.exporter, protoLimitBytes: protoLimitBytes(), optimize: run.optimize,
      }, { signal: options.signal, onProgress: (p) => options.events.progress('export', `${p.step}: ${p.message}`) }).finally(unsweep);
      // The bridge renamed its outputs into place; flush them (and the folder) before anything refers to them.
      for (const f of [exportPath, `${exportPath}.data`, dirname(exportPath)]) if (existsSync(f)) fsyncPath(f);
      const o = result.optimize;
      const fused = !o ? '' : o.applied ? `; fused (${o.method}): ${Object.entries(o.fusionCounts).map(([k, v]) => `${k} ${v}`).join(', ')}` : `; NOT fused, unfused graph kept: ${o.reason}`;
      const p = o?.applied ? o.parity! : result.parity;
      return { result, detail: `parity max |Δlogits| ${p.maxAbsDiff.toExponential(2)}, top-1 ${p.top1Agreement}${fused}` };
    });
}

/** What the manifest records of the export's fusions (null with --optimize none). */
export function optimizationOf(exported: ExportResult): ManifestOptimization | null {
  const o = exported.optimize;
  if (!o) return null;
  return { mode: o.mode, applied: o.applied, reason: o.reason ?? null, method: o.method, fusionCounts: o.fusionCounts, nonStandardOps: o.nonStandardOps, parity: o.parity ?? null };
}

/** The `quantize` step: the strategy fallback and the settings ladder, gated on quality. */
export function quantizeStep(run: ExportRun): Promise<QuantizeReport> {
  const { options, source, quantPath } = run;
  const { events } = options;
  return run.steps.run<QuantizeReport>('quantize', `quantize ${options.precision} (${options.strategy})`, run.prints.quantize,
    () => [quantPath, `${quantPath}.data`].filter(existsSync),
    async () => {
      const result = await quantizeModel({
        ...options.quant,
        input: run.modelPath, output: quantPath, precision: options.precision, strategy: options.strategy, force: true, env: await run.bridge(),
        threads: options.threads, signal: options.signal,
        tokenizer: { dir: run.hfDir(), synthetic: !!source.synthetic && !source.preset?.offlineTokenizer },
        onAttempt: (s, setting) => events.progress('quantize', `trying ${setting ? `${setting}, ` : ''}${s}`),
        onProgress: (p) => events.progress('quantize', progressText(p)),
        onAttemptDone: (a) => events.progress('quantize', `${a.setting ? `${a.setting} / ` : ''}${a.strategy}: ${a.ok ? 'ok' : `${a.error?.class}: ${a.error?.message}`}`),
      });
      return { result, detail: `via ${result.strategy}, ${result.setting}${result.slowerThanFp32 ? ' (SLOWER than fp32 on this CPU)' : ''}` };
    });
}

/** The `assemble` step: tokenizer and config files copied beside the model, and genai_config.json. */
export async function assembleStep(run: ExportRun): Promise<void> {
  const { onnxDir, source } = run;
  await run.steps.run('assemble', 'tokenizer, configs and genai_config.json', run.prints.assemble,
    () => [...COPIED, 'genai_config.json'].map((f) => join(onnxDir, f)).filter(existsSync),
    async () => {
      for (const f of COPIED) {
        const from = join(run.hfDir(), f);
        if (!existsSync(from)) continue;
        const tmp = join(onnxDir, `.sphana-tmp-${runTag()}-${f}`);
        copyFileSync(from, tmp);
        renameDurable(tmp, join(onnxDir, f));
      }
      const config = readJson<HfConfig>(join(onnxDir, 'config.json'), 'model config');
      const tokenizer = readTokenizerFacts(onnxDir, { synthetic: !!source.synthetic && !source.preset?.offlineTokenizer });
      const architecture = describeArchitecture(config);
      const kv = { layers: architecture.layers, numKvHeads: architecture.numKvHeads, headDim: architecture.headDim, dtype: 'float32', pastKeyTemplate: 'past_key_values.%d.key', pastValueTemplate: 'past_key_values.%d.value', presentKeyTemplate: 'present.%d.key', presentValueTemplate: 'present.%d.value' };
      writeFileAtomic(join(onnxDir, 'genai_config.json'), `${JSON.stringify(genaiConfig({ filename: MODEL_FILE, architecture, kvCache: kv, bosTokenId: tokenizer.bosTokenId, eosTokenIds: tokenizer.eosTokenIds, padTokenId: tokenizer.padTokenId }), null, 2)}\n`);
      return { result: { tokenizer: tokenizer.format } };
    });
}

/** What the manifest records of this run (buildManifest reads the files' sizes and hashes back). */
export async function manifestInput(run: ExportRun, exported: ExportResult, quantized: QuantizeReport): Promise<ManifestInput> {
  const { options, dir, onnxDir, source } = run;
  const tools = await run.tools();
  const models: Array<{ precision: Precision; path: string }> = [
    { precision: 'fp32', path: `${MODEL_SUBDIR}/${MODEL_FILE}` },
    { precision: options.precision, path: relative(dir, run.quantPath) },
  ];
  return {
    dir, name: source.preset?.name ?? source.name ?? (readJson<HfConfig>(join(onnxDir, 'config.json'), 'model config').model_type ?? 'model'),
    artifactVersion: options.artifactVersion, source: source.manifestSource, models,
    tokenizerSynthetic: !!source.synthetic && !source.preset?.offlineTokenizer,
    quantization: {
      precision: options.precision, strategy: quantized.strategy,
      ...(quantized.setting ? { setting: quantized.setting, settings: quantized.settings, head: quantized.head, speed: quantized.speed, slowerThanFp32: quantized.slowerThanFp32 } : {}),
      attempts: quantized.attempts.map((a) => ({
        strategy: a.strategy, ok: a.ok, seconds: a.seconds, ...(a.setting ? { setting: a.setting } : {}), ...(a.error ? { error: a.error } : {}),
        ...(a.agreement ? { agreement: { top1: a.agreement.top1Agreement, cosine: a.agreement.meanCosine, positions: a.agreement.positions } } : {}),
        ...(a.bytes !== undefined ? { bytes: a.bytes } : {}), ...(a.speed ? { speed: a.speed } : {}),
      })),
    },
    quality: quantized.quality ? { [quantized.quality.precision]: quantized.quality } : null,
    parity: { ...exported.parity, exporter: exported.exporter, opset: exported.opset, ...(exported.stamp ? { stamp: exported.stamp } : {}) },
    verification: null, tools, optimization: optimizationOf(exported),
  };
}

/** The `verify` step: the report goes into the manifest; a failed check fails the run (and is not recorded as done). */
export async function verifyStep(run: ExportRun, manifest: Manifest): Promise<{ manifest: Manifest; verification: NonNullable<ExportSummary['verification']> }> {
  const { dir, options } = run;
  const report = await run.steps.run('verify', 'verify: files, structure, tokenizer, runtime, agreement', run.prints.verify(manifest.files.map((f) => f.sha256)), () => [], async () => {
    const r = await verifyArtifacts(dir, { threads: options.threads, onProgress: (m: string) => options.events.progress('verify', m) });
    return { result: r, detail: r.ok ? 'all checks passed' : `failed: ${r.checks.filter((c) => !c.passed).map((c) => c.name).join(', ')}` };
  });
  const verification = { ok: report.ok, failed: report.checks.filter((c) => !c.passed).map((c) => c.name) };
  const verified = { ...manifest, quality: Object.keys(report.quality).length ? report.quality : manifest.quality, verification: report as unknown as Record<string, unknown> };
  writeManifest(dir, verified);
  if (!report.ok) {
    run.state.forget('verify');
    throw new JobFailedError('E_VERIFY_FAILED', `verification failed: ${verification.failed.join(', ')}`, { hint: `run \`sphana verify ${dir}\` for the figures` });
  }
  return { manifest: verified, verification };
}

async function toolVersions(env: BridgeEnvironment, signal?: AbortSignal): Promise<Record<string, string>> {
  const versions = await bridgeVersions(env, { signal });
  return {
    sphana: sphanaVersion(), node: process.version, 'onnxruntime-node': onnxruntimeVersion(), python: versions.python,
    ...Object.fromEntries(Object.entries(versions.packages).map(([k, v]) => [`python:${k}`, v])),
  };
}

