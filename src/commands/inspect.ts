import { isSphanaError } from '../errors.js';
import type { Output } from '../cli/output.js';
import { reportError } from '../cli/report-error.js';
import { inspectFile, toJsonLine, type ModelSummary } from '../onnx/summary.js';
import { renderSummary } from './inspect-render.js';

export interface InspectOptions {}

/** `sphana inspect FILE...`: one result per file, in argument order; failures do not stop the others. */
export async function run(files: string[], _options: InspectOptions, out: Output): Promise<number> {
  let worst = 0;
  for (const [index, path] of files.entries()) {
    let summary: ModelSummary;
    try {
      summary = inspectFile(path);
    } catch (error) {
      if (!isSphanaError(error)) throw error;
      out.json(toJsonLine({ path, error: { code: error.code, message: error.message } }));
      const code = reportError(error, { json: false, verbose: out.options.verbose });
      worst = Math.max(worst, code);
      continue;
    }
    out.json(toJsonLine(summary));
    if (!out.options.json) {
      if (index > 0) out.result('');
      out.result(renderSummary(summary));
    }
    for (const problem of summary.problems) {
      out.warn(`${path}: ${problem.code}: ${problem.message}`);
      worst = Math.max(worst, 3);
    }
  }
  return worst;
}
