import { requirementsHash } from '../python/paths.js';
import { protoLimitBytes } from '../quantize/run.js';
import { fingerprint } from './state.js';

/** What the export's step fingerprints depend on. */
export interface PrintInputs {
  identity: Record<string, unknown>;
  exporter: string;
  optimize: string;
  precision: string;
  strategy: string;
  quant?: Record<string, unknown>;
}

export interface StepPrints {
  weights: string;
  export: string;
  optimize: string;
  assemble: string;
  quantize: string;
  verify(fileSha256s: string[]): string;
}

/**
 * The fingerprints that decide whether a step is up to date: one definition for the pipeline and for
 * `export --dry-run`, so the plan's "skip" is exactly the run's.
 */
export function stepPrints(i: PrintInputs): StepPrints {
  const weightsPrint = fingerprint({ identity: i.identity, requirements: requirementsHash() });
  const exportPrint = fingerprint({ weightsPrint, exporter: i.exporter, limit: protoLimitBytes(), ...(i.optimize === 'none' ? {} : { exportPath: 'unfused' }) });
  const optimizePrint = fingerprint({ exportPrint, optimize: i.optimize });
  const assemblePrint = fingerprint({ weightsPrint, exportPrint });
  const quantPrint = fingerprint({ exportPrint, optimizePrint, precision: i.precision, strategy: i.strategy, quant: i.quant ?? {} });
  return {
    weights: weightsPrint, export: exportPrint, optimize: optimizePrint, assemble: assemblePrint, quantize: quantPrint,
    verify: (files) => fingerprint({ quantPrint, assemblePrint, files }),
  };
}
