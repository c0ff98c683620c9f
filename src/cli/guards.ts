import { exitOnSignals } from '../cleanup.js';
import { InterruptedError } from '../errors.js';
import { reportError } from './report-error.js';

/**
 * What every run of the CLI installs before its command starts (the full CLI in main.ts and
 * the inspect fast path in fast-path.ts alike).
 * - `sphana inspect --json big.onnx | head`: a closed pipe ends the command quietly.
 * - Ctrl-C, SIGTERM and SIGHUP print the one-line error (and its JSON with --json) and exit
 *   130, 143 or 129 (src/cleanup.ts). Returns the function that unhooks the signal handlers.
 */
export function guardProcess(json: boolean): () => void {
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'EPIPE') process.exit(process.exitCode ?? 0);
      throw error;
    });
  }
  return exitOnSignals((signal) => reportError(new InterruptedError(signal === 'SIGINT' ? 'interrupted (Ctrl-C)' : `interrupted (${signal})`), { json, verbose: false }));
}
