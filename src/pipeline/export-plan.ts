/**
 * `sphana export --dry-run`: what a run would do, before any heavy work. `gatherPlanFacts` reads
 * the little it needs (the config, the resume state, free disk and memory; never weights, never the
 * network); `planExport` is a pure function of those facts. The command renders the plan.
 */
import { existsSync, readFileSync, statfsSync } from 'node:fs';
import { freemem, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { isSphanaError } from '../errors.js';
import { type HfConfig, familyFor, findPreset, parameterCount, tinyVariant } from '../models/index.js';
import { inspectBridgeEnvironment } from '../python/environment.js';
import { protoLimitBytes } from '../quantize/run.js';
import { DEFAULT_OPTIMIZE, type QuantizePrecision, STRATEGIES } from '../vocabulary.js';
import type { ExportOptions } from './export-pipeline.js';
import { readJson } from '../tokenizer/special-tokens.js';
import { type ModelSource, resolveSource } from './source.js';
import { StateStore } from './state.js';
import { exportFacts, exportInputDir, stepPrints } from './step-prints.js';

/** Measured on `llama-3.2-1b --synthetic full` (bench/results/export.md): every step's peak RSS ≤ 1.35× the fp32 model. */
export const PEAK_MEMORY_RATIO = 1.35;
/** The INT8 twin is 25.0 % of the fp32 model (same benchmark). INT4 is not measured; 25 % bounds it (its embedding stays INT8). */
export const QUANTIZED_RATIO = 0.25;
/** Below this, the fixed cost dominates: Python with torch plus node with a tokenizer (tiny exports peak near 1 GB). */
export const MIN_PEAK_MEMORY = 2 ** 30;

/** The export's options the plan reads (optimize and quant enter the quantize step's fingerprint). */
export type PlanOptions = Pick<ExportOptions,
  'model' | 'synthetic' | 'weights' | 'revision' | 'offline' | 'out' | 'artifactVersion' | 'precision' | 'strategy' | 'exporter'
  | 'optimize' | 'quant' | 'seed' | 'force' | 'verify'>;

export interface PlanFacts {
  options: PlanOptions;
  dir: string;
  /** Where the weights come from, in words, and whether they are already on this machine. */
  weights: { from: string; dir: string | null; present: boolean; detail: string };
  config: HfConfig;
  environment: { dir: string; healthy: boolean };
  /** Steps whose recorded inputs still match (what a resumed run skips). */
  upToDate: Record<string, boolean>;
  protoLimitBytes: number;
  machine: { freeDiskBytes: number | null; totalMemoryBytes: number; availableMemoryBytes: number };
}

export interface PlanStep { step: string; action: 'run' | 'skip'; why: string }

export interface ExportPlan {
  model: string;
  dir: string;
  weights: PlanFacts['weights'];
  parameters: number;
  precision: QuantizePrecision;
  strategyOrder: string[];
  steps: PlanStep[];
  estimate: { fp32ModelBytes: number; quantizedModelBytes: number; diskBytes: number; peakMemoryBytes: number; ratios: { peakMemory: number; quantized: number } };
  machine: PlanFacts['machine'] & { enoughDisk: boolean | null; enoughMemory: boolean };
  ok: boolean;
  problems: string[];
}

/** The plan: pure arithmetic on the facts. */
export function planExport(facts: PlanFacts): ExportPlan {
  const o = facts.options;
  const parameters = parameterCount(facts.config);
  const fp32 = parameters * 4;
  const quantized = Math.ceil(fp32 * QUANTIZED_RATIO);
  // At --out: the fp32 model, its quantized twin, and (synthetic) the weights it was made from, in fp32.
  const disk = fp32 + quantized + (o.synthetic ? fp32 : 0);
  const peak = Math.max(Math.ceil(fp32 * PEAK_MEMORY_RATIO), MIN_PEAK_MEMORY);
  const skip = (name: string) => !o.force && facts.upToDate[name] === true;
  const steps: PlanStep[] = [];
  steps.push(facts.environment.healthy
    ? { step: 'environment', action: 'skip', why: `healthy: ${facts.environment.dir}` }
    : { step: 'environment', action: 'run', why: `first run: create ${facts.environment.dir} (pip installs torch and the pinned packages; minutes)` });
  const exportSkips = skip('export') && skip('assemble');
  if (o.synthetic) {
    steps.push(exportSkips || skip('weights')
      ? { step: 'weights', action: 'skip', why: exportSkips ? 'not needed: export and assemble are up to date' : 'up to date' }
      : { step: 'weights', action: 'run', why: `synthesize ${o.synthetic} ${o.model} weights (seed ${o.seed})` });
  } else if (!facts.weights.present) {
    steps.push({ step: 'weights', action: 'run', why: facts.weights.detail });
  }
  const row = (name: string, what: string) => steps.push(skip(name) ? { step: name, action: 'skip', why: 'up to date' } : { step: name, action: 'run', why: what });
  const optimize = o.optimize ?? DEFAULT_OPTIMIZE;
  row('export', `${o.exporter} export with KV cache + parity gate${optimize === 'none' ? '' : `, ${optimize} fusions (the unfused graph if they fail)`}`);
  const order = o.strategy === 'auto' ? [...STRATEGIES] : [o.strategy];
  row('quantize', `${o.precision}, trying ${order.join(' → ')}`);
  row('assemble', 'tokenizer, configs and genai_config.json');
  steps.push({ step: 'manifest', action: 'run', why: 'always (read back from the written files)' });
  if (o.verify) row('verify', 'files, structure, tokenizer, runtime, agreement');
  const strategyOrder = order.map((s) => (s === 'direct' && quantized > facts.protoLimitBytes
    ? `${s} (refused up front: ${quantized} bytes > the ${facts.protoLimitBytes}-byte protobuf limit)` : s));

  const problems: string[] = [];
  if (facts.weights.from === 'none') problems.push(facts.weights.detail);
  const free = facts.machine.freeDiskBytes;
  const enoughDisk = free === null ? null : free >= disk;
  if (enoughDisk === false) problems.push(`not enough disk at ${facts.dir}: needs about ${gib(disk)}, ${gib(free!)} free`);
  const enoughMemory = facts.machine.availableMemoryBytes >= peak;
  if (!enoughMemory) problems.push(`not enough memory: peaks near ${gib(peak)}, ${gib(facts.machine.availableMemoryBytes)} available (of ${gib(facts.machine.totalMemoryBytes)})`);
  return {
    model: o.model, dir: facts.dir, weights: facts.weights, parameters, precision: o.precision, strategyOrder, steps,
    estimate: { fp32ModelBytes: fp32, quantizedModelBytes: quantized, diskBytes: disk, peakMemoryBytes: peak, ratios: { peakMemory: PEAK_MEMORY_RATIO, quantized: QUANTIZED_RATIO } },
    machine: { ...facts.machine, enoughDisk, enoughMemory },
    ok: problems.length === 0, problems,
  };
}

const gib = (bytes: number) => `${(bytes / 2 ** 30).toFixed(2)} GiB`;

function freeDisk(dir: string): number | null {
  let probe = resolve(dir);
  while (!existsSync(probe) && dirname(probe) !== probe) probe = dirname(probe);
  try {
    const s = statfsSync(probe);
    return s.bavail * s.bsize;
  } catch {
    return null;
  }
}

/** Available memory: the smaller of the OS's available memory and a cgroup limit. */
function availableMemory(): number {
  const constrained = (process as { constrainedMemory?: () => number | undefined }).constrainedMemory?.() ?? 0;
  const available = freemem();
  return constrained > 0 && constrained < totalmem() ? Math.min(available, constrained) : available;
}

/**
 * The facts a plan needs, read without heavy work: the config (a preset's, or config.json), the
 * weights' whereabouts (never downloading), the resume state, free disk and memory.
 * The step fingerprints are runExport's own (step-prints.ts; the dry-run test checks they agree).
 */
export async function gatherPlanFacts(o: PlanOptions): Promise<PlanFacts> {
  const dir = resolve(o.out, o.artifactVersion);
  let source: ModelSource | undefined;
  let weights: PlanFacts['weights'];
  let config: HfConfig;
  const isFolder = existsSync(o.model);
  if (isFolder || o.synthetic) {
    source = await resolveSource({ model: o.model, synthetic: o.synthetic, seed: o.seed });
    if (source.synthetic) {
      const preset = source.preset!;
      config = source.synthetic === 'tiny' ? tinyVariant(preset, preset.offlineTokenizer ? (preset.config.vocab_size ?? 512) : 512).config : preset.config;
      weights = { from: 'synthetic', dir: null, present: true, detail: `random ${source.synthetic} weights for ${preset.name} (seed ${o.seed})` };
    } else {
      config = readJson<HfConfig>(join(source.dir!, 'config.json'), 'model config');
      weights = { from: 'local-folder', dir: source.dir!, present: true, detail: source.dir! };
    }
  } else {
    const preset = findPreset(o.model);
    try {
      // As the export resolves them, minus the download.
      source = await resolveSource({ model: o.model, weights: o.weights, revision: o.revision, offline: true, seed: o.seed });
      config = readJson<HfConfig>(join(source.dir!, 'config.json'), 'model config');
      weights = { from: source.manifestSource.weightsFrom, dir: source.dir!, present: true, detail: `${source.manifestSource.weightsFrom}: ${source.dir}` };
    } catch (error) {
      if (!isSphanaError(error) || o.weights) throw error;
      config = preset.config;
      weights = o.offline
        ? { from: 'none', dir: null, present: false, detail: `${preset.hubId} is not on this machine and --offline forbids a download` }
        : { from: 'hub-download', dir: null, present: false, detail: `download ${preset.hubId}@${o.revision ?? 'main'} from the hub (not in the local cache)` };
    }
  }
  familyFor(config);
  const status = await inspectBridgeEnvironment();
  const upToDate: Record<string, boolean> = {};
  if (source && existsSync(join(dir, '.sphana-state.json'))) {
    const state = new StateStore(dir);
    const prints = stepPrints({ identity: source.identity, exporter: o.exporter, optimize: o.optimize ?? DEFAULT_OPTIMIZE, precision: o.precision, strategy: o.strategy, quant: o.quant, architecture: exportFacts(exportInputDir(source.dir, dir)) });
    upToDate.weights = !!state.upToDate('weights', prints.weights);
    upToDate.export = !!state.upToDate('export', prints.export);
    upToDate.quantize = !!state.upToDate('quantize', prints.quantize);
    upToDate.assemble = !!state.upToDate('assemble', prints.assemble);
    try {
      const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as { files: Array<{ sha256: string }> };
      upToDate.verify = !!state.upToDate('verify', prints.verify(manifest.files.map((f) => f.sha256)));
    } catch {
      upToDate.verify = false;
    }
  }
  return {
    options: o, dir, weights, config,
    environment: { dir: status.venvDir, healthy: status.healthy },
    upToDate, protoLimitBytes: protoLimitBytes(),
    machine: { freeDiskBytes: freeDisk(dir), totalMemoryBytes: totalmem(), availableMemoryBytes: availableMemory() },
  };
}
