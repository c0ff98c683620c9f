import { progressText } from '../progress.js';
import type { Output, Step } from '../cli/output.js';
import { UsageError } from '../errors.js';
import { type QuantFlags, parseQuantFlags } from '../quantize/cli-options.js';
import { quantizeModel } from '../quantize/run.js';
import type { Int8Engine, QuantizePrecision, StrategyChoice } from '../vocabulary.js';
import { bytes } from './inspect-render.js';

/** As commander hands them over, each flag parsed and checked (src/cli/main.ts). */
export interface QuantizeCliOptions extends QuantFlags {
  output?: string;
  strategy: StrategyChoice;
  precision: QuantizePrecision;
  perChannel?: boolean;
  force?: boolean;
  threads?: number;
  engine: Int8Engine;
}

/** `sphana quantize MODEL.onnx`: INT8/INT4 with the direct → external-data → embedding-split fallback. */
export async function run([input]: string[], options: QuantizeCliOptions, out: Output): Promise<number> {
  const flags = parseQuantFlags(options.precision, options);
  if (options.perChannel && flags.int8Scheme !== 'dynamic') throw new UsageError('--per-channel applies to --int8-scheme dynamic');
  let step: Step | undefined;
  const report = await quantizeModel({
    ...flags,
    input,
    output: options.output,
    strategy: options.strategy,
    precision: options.precision,
    perChannel: options.perChannel,
    engine: options.engine,
    force: options.force,
    threads: options.threads,
    onAttempt: (strategy, setting) => { step = out.step(`quantize ${options.precision} (${setting ? `${setting}, ` : ''}${strategy})`); },
    onProgress: (p) => step?.update(progressText(p)),
    onAttemptDone: (a) => {
      if (a.ok) step?.succeed();
      else step?.fail(a.error ? `${a.error.class}: ${a.error.message}` : '');
    },
  });
  out.json(JSON.stringify(report));
  out.result(`${report.output}  ${report.precision} via ${report.strategy}  ${report.files.map((f) => `${f.path.split('/').pop()} ${bytes(f.bytes)}`).join(', ')}`);
  out.result(`quantized ops: ${Object.entries(report.quantizedOps).map(([k, n]) => `${k} ${n}`).join(', ')}`);
  if (report.quality) {
    const q = report.quality;
    out.result(`quality vs fp32 on the ${q.text === 'corpus' ? 'corpus' : 'synthetic ids'} (${q.positions} positions): ${q.reason}`);
  }
  out.result(`attempts: ${report.attempts.map((a) => `${a.setting ? `${a.setting} / ` : ''}${a.strategy} ${a.ok ? 'ok' : 'failed'} (${a.seconds.toFixed(1)}s)`).join(', ')}`);
  if (report.speed) out.result(`decode probe: ${report.speed.candidate.toFixed(1)} tok/s vs fp32 ${report.speed.fp32.toFixed(1)} tok/s (×${report.speed.ratio.toFixed(2)})`);
  if (report.slowerThanFp32) out.result(`WARNING: this ${report.precision} artifact decodes slower than fp32 on this CPU`);
  return 0;
}
