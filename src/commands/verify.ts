import type { Output } from '../cli/output.js';
import { escapeStrings } from '../cli/escape.js';
import { reportError } from '../cli/report-error.js';
import { chalk } from '../cli/terminal.js';
import { JobFailedError } from '../errors.js';
import type { Precision } from '../manifest/schema.js';
import { type CheckResult, INFORMATIONAL, type VerificationReport, verifyArtifacts } from '../verify/index.js';

/** As commander hands them over, each flag parsed and checked (src/cli/main.ts). */
export interface VerifyCommandOptions {
  prompt?: string;
  tokens?: number;
  precision?: Precision[];
  threads?: number;
  top1?: number;
  cosine?: number;
  kl?: number;
}

/** `sphana verify ARTIFACT`: the report (a table, or one JSON object); exit 1 when a check failed. */
export async function run(args: string[], options: VerifyCommandOptions, out: Output): Promise<number> {
  const [target] = args;
  const { tokens, threads, precision: precisions } = options;
  const thresholds = { top1: options.top1, cosine: options.cosine, kl: options.kl };
  const step = out.step(`verifying ${target}`);
  let report: VerificationReport;
  try {
    report = await verifyArtifacts(target, {
      prompt: options.prompt, tokens, threads, precisions, thresholds,
      onProgress: (message) => step.update(message),
    }, (check) => step.update(`${check.name}: ${check.status}`));
  } catch (error) {
    step.fail();
    throw error;
  }
  if (report.ok) step.succeed(`${report.checks.length} checks`);
  else step.fail(`failed: ${report.failed.join(', ')}`);
  out.json(JSON.stringify(report));
  if (!out.options.json) out.result(renderReport(report));
  if (!report.ok) {
    const error = new JobFailedError('E_VERIFY_FAILED', `verification failed: ${report.failed.join(', ')}`, {
      hint: 'the figures of each failed check are in the table (or --json)',
      details: { failed: report.failed },
    });
    return reportError(error, { json: false, verbose: out.options.verbose });
  }
  return 0;
}

/** The quality table, one row per precision, the way llama.cpp's perplexity scoreboard lists quantization types. */
export function renderQuality(report: VerificationReport): string[] {
  const rows = Object.values(report.quality ?? {}); // absent in a report whose agreement check never ran
  if (!rows.length || !report.qualityText) return [];
  const t = report.qualityText;
  const head = t.source === 'corpus'
    ? `quality on the corpus (v${t.corpusVersion}: ${t.sequences} sequences, ${t.tokens} tokens, teacher-forced) against fp32:`
    : `quality on synthetic ids (${t.why ?? 'no real tokenizer'}; no perplexity) against fp32:`;
  const table = [['precision', 'ppl', 'Δppl', 'KL mean', 'KL max', 'top-1', 'top-1 near-tie', 'gate']];
  const ppl0 = rows.find((r) => r.ppl)?.ppl?.fp32;
  table.push(['fp32', ppl0 !== undefined ? ppl0.toFixed(3) : '-', '', '', '', '', '', '']);
  for (const q of rows) {
    table.push([
      q.precision, q.ppl ? q.ppl.quantized.toFixed(3) : '-',
      q.ppl ? `${q.ppl.delta >= 0 ? '+' : ''}${q.ppl.delta.toFixed(3)} (${q.ppl.deltaPercent >= 0 ? '+' : ''}${q.ppl.deltaPercent.toFixed(2)}%)` : '-',
      q.meanKl.toFixed(5), q.maxKl.toFixed(3), q.top1.toFixed(3), `${q.nearTieTop1.toFixed(3)} (ε ${q.nearTieNats})`, q.passed ? 'PASS' : 'FAIL',
    ]);
  }
  const widths = table[0].map((_, i) => Math.max(...table.map((r) => r[i].length)));
  return [head, ...table.map((r) => `  ${r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd()}`)];
}

const MARK: Record<CheckResult['status'], (s: string) => string> = {
  passed: (s) => chalk.green(s),
  failed: (s) => chalk.red(s),
  skipped: (s) => chalk.yellow(s),
};
const WORD: Record<CheckResult['status'], string> = { passed: 'PASS', failed: 'FAIL', skipped: 'SKIP' };

/** The people's table: check, result, seconds, key figures (long messages wrapped at '; '). */
export function renderReport(untrusted: VerificationReport): string {
  const report = escapeStrings(untrusted); // names and messages can quote manifest and model strings
  const width = Math.max(...report.checks.map((c) => c.name.length), 'check'.length);
  const lines = [`${report.name}  ${chalk.dim(report.dir)}`, `${'check'.padEnd(width)}  result  time    figures`];
  for (const c of report.checks) {
    const word = INFORMATIONAL.has(c.name) && c.status === 'passed' ? 'INFO' : WORD[c.status];
    const parts = c.message.split('; ');
    const time = `${c.seconds.toFixed(1)}s`.padEnd(6);
    lines.push(`${c.name.padEnd(width)}  ${MARK[c.status](word.padEnd(6))}  ${time}  ${parts[0]}`);
    for (const more of parts.slice(1)) lines.push(`${' '.repeat(width + 18)}${more}`);
  }
  if (report.promptIds === 'synthetic') lines.push(chalk.yellow('runtime checks used fixed synthetic token ids: the tokenizer cannot encode for this model'));
  lines.push(...renderQuality(report));
  const gates = Object.entries(report.thresholds).map(([p, g]) => `${p} top-1 ≥ ${g.top1} (near-ties ≤ ${g.nearTieNats} nats), cosine ≥ ${g.cosine}, KL ≤ ${g.kl}`);
  lines.push(chalk.dim(`thresholds: ${gates.length ? gates.join('; ') : 'none (no quantized model)'}; ${report.tokens} decode steps, ${report.threads} threads; ${report.seconds.toFixed(1)}s`));
  lines.push(report.ok ? chalk.green('verified') : chalk.red(`FAILED: ${report.failed.join(', ')}`));
  return lines.join('\n');
}
