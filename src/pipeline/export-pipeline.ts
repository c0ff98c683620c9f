import { copyFileSync, existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { genaiConfig } from '../artifacts/genai-config.js';
import { runTag, sweepOnExit, sweepStaging } from '../cleanup.js';
import { acquireLock } from '../artifacts/lock.js';
import { fsyncPath, renameDurable, writeFileAtomic } from '../artifacts/files.js';
import { JobFailedError } from '../errors.js';
import { MODEL_SUBDIR, buildManifest, writeManifest } from '../manifest/build.js';
import type { Manifest, Precision } from '../manifest/schema.js';
import { describeArchitecture, factsFor, type HfConfig } from '../models/index.js';
import { bridgeVersions } from '../python/bridge-commands.js';
import { type ExportResult, bridgeExport } from '../python/export-commands.js';
import { type OptimizeMode, type OptimizeSummary, optimizeStep } from './optimize-step.js';
import type { BridgeEnvironment } from '../python/environment.js';
import { type QuantizeOptions, type QuantizeReport, type StrategyChoice, protoLimitBytes, quantizeModel } from '../quantize/run.js';
import { onnxruntimeVersion } from '../runtime/onnxruntime.js';
import { readJson, readTokenizerFacts } from '../tokenizer/special-tokens.js';
import { type GgufConversion, convertGguf } from './gguf-weights.js';
import { environmentStep } from './environment-step.js';
import { progressText } from '../progress.js';
import { type ModelSource, resolveSource, synthesizeWeights } from './source.js';
import { StateStore } from './state.js';
import { stepPrints } from './step-prints.js';
import { sphanaVersion } from '../version.js';
import { verifyArtifacts } from '../verify/index.js';

export const MODEL_FILE = 'llm_generator.onnx';
const COPIED = ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer.model', 'tokenizer_config.json', 'special_tokens_map.json'];

export interface ExportOptions {
  model: string;
  synthetic?: 'tiny' | 'full';
  weights?: string;
  revision?: string;
  offline?: boolean;
  out: string;
  artifactVersion: string;
  precision: 'int8' | 'int4';
  strategy: StrategyChoice;
  /** Scheme, accuracy level and int4 settings (default: the gate's ladder, see settingsLadder). */
  quant?: Pick<QuantizeOptions, 'int8Scheme' | 'accuracyLevel' | 'int4'>;
  exporter: 'dynamo' | 'torchscript';
  /** onnxruntime fusions between export and quantize (default none). */
  optimize?: OptimizeMode;
  seed: number;
  force: boolean;
  verify: boolean;
  threads?: number;
  signal?: AbortSignal;
  events: PipelineEvents;
}

export interface PipelineEvents {
  start(step: string, label: string): void;
  progress(step: string, message: string): void;
  done(step: string, info: { seconds: number; skipped: boolean; detail?: string }): void;
  failed(step: string, error: unknown): void;
}

export interface StepTiming { step: string; seconds: number; skipped: boolean; detail?: string }

export interface ExportSummary {
  dir: string;
  manifest: string;
  steps: StepTiming[];
  files: Manifest['files'];
  kvCache: Manifest['kvCache'];
  parity: unknown;
  quantization: Manifest['quantization'];
  verification: { ok: boolean; failed: string[] } | null;
}

/** export → quantize → verify → manifest, skipping steps whose recorded inputs still match; one run per folder (a lock). */
export async function runExport(options: ExportOptions): Promise<ExportSummary> {
  const dir = resolve(options.out, options.artifactVersion);
  const release = acquireLock(dir, `sphana export ${options.model}`);
  try {
    return await runLockedExport(options, dir);
  } finally {
    release();
  }
}

async function runLockedExport(options: ExportOptions, dir: string): Promise<ExportSummary> {
  const onnxDir = join(dir, MODEL_SUBDIR);
  const workDir = join(dir, '.sphana-work');
  mkdirSync(onnxDir, { recursive: true });
  const state = new StateStore(dir);
  const steps: StepTiming[] = [];
  const { events } = options;

  async function step<T>(name: string, label: string, print: string, outputs: () => string[], run: () => Promise<{ result: T; detail?: string }>): Promise<T> {
    const cached = options.force ? undefined : state.upToDate(name, print);
    events.start(name, label);
    if (cached) {
      events.done(name, { seconds: 0, skipped: true, detail: 'up to date' });
      steps.push({ step: name, seconds: 0, skipped: true });
      return cached.result as T;
    }
    const t0 = performance.now();
    try {
      const { result, detail } = await run();
      const seconds = (performance.now() - t0) / 1000;
      state.record(name, print, outputs().map((p) => relative(dir, p)), result, seconds);
      events.done(name, { seconds, skipped: false, detail });
      steps.push({ step: name, seconds, skipped: false, detail });
      return result;
    } catch (error) {
      events.failed(name, error);
      throw error;
    }
  }

  const source = await resolveSource({ ...options, onProgress: (m) => events.progress('weights', m) });
  let env: BridgeEnvironment | undefined;
  const bridge = async () => (env ??= await environmentStep(events, { signal: options.signal, record: (seconds) => steps.push({ step: 'environment', seconds, skipped: false }) }));
  await bridge(); // every run needs it (at least for the tool versions); its own step, before the others' spinners
  const hfDir = () => source.dir ?? join(workDir, 'hf');
  const optimize = options.optimize ?? 'none';
  const prints = stepPrints({ identity: source.identity, exporter: options.exporter, optimize, precision: options.precision, strategy: options.strategy, quant: options.quant });
  const weightsPrint = prints.weights;

  let converted: GgufConversion | undefined;
  const ensureWeights = async () => {
    if (source.gguf) {
      const { path, file } = source.gguf;
      const hf = join(workDir, 'hf');
      converted = await step<GgufConversion>('weights', `convert ${file} → fp32 Hugging Face folder`, weightsPrint, () => readdirSync(hf).filter((f) => !f.startsWith('.')).map((f) => join(hf, f)), async () => {
        const result = await convertGguf(path, file, hf, await bridge(), { signal: options.signal, onProgress: (m) => events.progress('weights', m) });
        return { result, detail: `${result.gguf.architecture} ${result.gguf.fileType ?? ''} (${result.gguf.quantizationTypes.join(', ')}) → ${result.architectures.join(', ')}` };
      });
      source.dir = hf;
      return;
    }
    if (!source.synthetic) return;
    const hf = join(workDir, 'hf');
    await step('weights', `synthesize ${source.synthetic} ${source.preset!.name} weights`, weightsPrint, () => readdirSync(hf).filter((f) => !f.startsWith('.')).map((f) => join(hf, f)), async () => {
      await synthesizeWeights(source, join(workDir, 'hf'), await bridge(), options.seed, { signal: options.signal, onProgress: (m) => events.progress('weights', m) });
      return { result: { dir: join(workDir, 'hf') } };
    });
    source.dir = join(workDir, 'hf');
  };
  if (source.synthetic && existsSync(join(workDir, 'hf', 'config.json'))) source.dir = join(workDir, 'hf');

  const modelPath = join(onnxDir, MODEL_FILE);
  // With --optimize ort the export lands in the work folder and the optimize step writes modelPath.
  const exportPath = optimize === 'none' ? modelPath : join(workDir, 'unfused', MODEL_FILE);
  const { export: exportPrint, optimize: optimizePrint, assemble: assemblePrint } = prints;
  // Weights are needed only by a step that has to run.
  if (options.force || !state.upToDate('export', exportPrint) || !state.upToDate('assemble', assemblePrint)
    || (optimize !== 'none' && !state.upToDate('optimize', optimizePrint))) await ensureWeights();
  if (source.gguf) {
    // The file's facts go into the manifest even when every step that needs the weights is up to date.
    converted ??= state.resultOf('weights', weightsPrint) as GgufConversion | undefined;
    if (!converted) await ensureWeights();
    source.manifestSource = { ...source.manifestSource, gguf: converted!.gguf };
  }
  const exported = await step<ExportResult>('export', `export ${options.exporter} with KV cache + parity gate`, exportPrint,
    () => [exportPath, `${exportPath}.data`].filter(existsSync),
    async () => {
      for (const f of [exportPath, `${exportPath}.data`]) rmSync(f, { force: true });
      mkdirSync(dirname(exportPath), { recursive: true });
      sweepStaging(dirname(exportPath));
      const unsweep = sweepOnExit(dirname(exportPath));
      const result = await bridgeExport(await bridge(), {
        modelDir: hfDir(), output: exportPath, architecture: factsFor(readJson<HfConfig>(join(hfDir(), 'config.json'), 'model config')), exporter: options.exporter, protoLimitBytes: protoLimitBytes(),
      }, { signal: options.signal, onProgress: (p) => events.progress('export', `${p.step}: ${p.message}`) }).finally(unsweep);
      // The bridge renamed its outputs into place; flush them (and the folder) before anything refers to them.
      for (const f of [exportPath, `${exportPath}.data`, dirname(exportPath)]) if (existsSync(f)) fsyncPath(f);
      return { result, detail: `parity max |Δlogits| ${result.parity.maxAbsDiff.toExponential(2)}, top-1 ${result.parity.top1Agreement}` };
    });

  let optimization: OptimizeSummary | null = null;
  if (optimize !== 'none') {
    optimization = await step<OptimizeSummary>('optimize', `optimize ${optimize}: onnxruntime fusions + parity gate`, optimizePrint,
      () => [modelPath, `${modelPath}.data`].filter(existsSync),
      async () => optimizeStep({ mode: optimize, input: exportPath, output: modelPath, modelDir: hfDir(), env: await bridge(), signal: options.signal, onProgress: (m) => events.progress('optimize', m) }));
  }

  const quantPath = join(onnxDir, MODEL_FILE.replace(/\.onnx$/, `.${options.precision}.onnx`));
  const quantPrint = prints.quantize;
  const quantized = await step<QuantizeReport>('quantize', `quantize ${options.precision} (${options.strategy})`, quantPrint,
    () => [quantPath, `${quantPath}.data`].filter(existsSync),
    async () => {
      const result = await quantizeModel({
        ...options.quant,
        input: modelPath, output: quantPath, precision: options.precision, strategy: options.strategy, force: true, env: await bridge(),
        threads: options.threads, signal: options.signal,
        tokenizer: { dir: hfDir(), synthetic: !!source.synthetic && !source.preset?.offlineTokenizer },
        onAttempt: (s, setting) => events.progress('quantize', `trying ${setting ? `${setting}, ` : ''}${s}`),
        onProgress: (p) => events.progress('quantize', progressText(p)),
        onAttemptDone: (a) => events.progress('quantize', `${a.setting ? `${a.setting} / ` : ''}${a.strategy}: ${a.ok ? 'ok' : `${a.error?.class}: ${a.error?.message}`}`),
      });
      return { result, detail: `via ${result.strategy}, ${result.setting}${result.slowerThanFp32 ? ' (SLOWER than fp32 on this CPU)' : ''}` };
    });

  await step('assemble', 'tokenizer, configs and genai_config.json', assemblePrint,
    () => [...COPIED, 'genai_config.json'].map((f) => join(onnxDir, f)).filter(existsSync),
    async () => {
      for (const f of COPIED) {
        const from = join(hfDir(), f);
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

  const tools = await toolVersions(await bridge());
  const models: Array<{ precision: Precision; path: string }> = [
    { precision: 'fp32', path: `${MODEL_SUBDIR}/${MODEL_FILE}` },
    { precision: options.precision, path: relative(dir, quantPath) },
  ];
  const manifestInput = {
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
    parity: { ...exported.parity, exporter: exported.exporter, opset: exported.opset },
    verification: null, tools, optimization,
  };
  let verification: ExportSummary['verification'] = null;
  const t0 = performance.now();
  events.start('manifest', 'manifest (read back from the written files)');
  let manifest = await buildManifest(manifestInput);
  writeManifest(dir, manifest);
  events.done('manifest', { seconds: (performance.now() - t0) / 1000, skipped: false });
  steps.push({ step: 'manifest', seconds: (performance.now() - t0) / 1000, skipped: false });

  if (options.verify) {
    {
      const report = await step('verify', 'verify: files, structure, tokenizer, runtime, agreement', prints.verify(manifest.files.map((f) => f.sha256)), () => [], async () => {
        const r = await verifyArtifacts(dir, { threads: options.threads, onProgress: (m: string) => events.progress('verify', m) });
        return { result: r, detail: r.ok ? 'all checks passed' : `failed: ${r.checks.filter((c) => !c.passed).map((c) => c.name).join(', ')}` };
      });
      verification = { ok: report.ok, failed: report.checks.filter((c) => !c.passed).map((c) => c.name) };
      manifest = { ...manifest, quality: Object.keys(report.quality).length ? report.quality : manifest.quality, verification: report as unknown as Record<string, unknown> };
      writeManifest(dir, manifest);
      if (!report.ok) {
        state.forget('verify');
        throw new JobFailedError('E_VERIFY_FAILED', `verification failed: ${verification.failed.join(', ')}`, { hint: `run \`sphana verify ${dir}\` for the figures` });
      }
    }
  }
  return { dir, manifest: join(dir, 'manifest.json'), steps, files: manifest.files, kvCache: manifest.kvCache, parity: manifest.parity, quantization: manifest.quantization, verification };
}

async function toolVersions(env: BridgeEnvironment): Promise<Record<string, string>> {
  const versions = await bridgeVersions(env);
  return {
    sphana: sphanaVersion(), node: process.version, 'onnxruntime-node': onnxruntimeVersion(), python: versions.python,
    ...Object.fromEntries(Object.entries(versions.packages).map(([k, v]) => [`python:${k}`, v])),
  };
}

