import { ExitCode, fromSystemError, isSphanaError } from '../errors.js';
import { escapeControl, jsonTerminalSafe, terminalSafe } from './escape.js';
import type { GlobalOptions } from './output.js';
import { chalk } from './terminal.js';

/** Turns any error into output and an exit status. Only here do errors become text. */
export function reportError(error: unknown, options: Pick<GlobalOptions, 'json' | 'verbose'>): number {
  error = fromSystemError(error) ?? error;
  if (isSphanaError(error)) {
    process.stderr.write(`${chalk.red('error')} ${escapeControl(error.code)}: ${escapeControl(error.message)}\n`);
    if (error.hint) process.stderr.write(`  hint: ${escapeControl(error.hint)}\n`);
    if (options.verbose && error.stack) process.stderr.write(`${terminalSafe(error.stack, { keepNewlines: true })}\n`);
    if (options.json) process.stdout.write(`${jsonTerminalSafe(JSON.stringify({ error: error.toJSON() }))}\n`);
    return error.exitCode;
  }
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`${chalk.red('internal error')}: ${escapeControl(message)}\n  This is a bug in sphana; please report it with the output of --verbose.\n`);
  if (options.verbose && error instanceof Error && error.stack) process.stderr.write(`${terminalSafe(error.stack, { keepNewlines: true })}\n`);
  if (options.json) process.stdout.write(`${jsonTerminalSafe(JSON.stringify({ error: { code: 'E_INTERNAL', message } }))}\n`);
  return ExitCode.internal;
}
