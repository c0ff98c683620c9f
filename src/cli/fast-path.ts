import { run as inspect } from '../commands/inspect.js';
import { guardProcess } from './guards.js';
import { type GlobalOptions, Output } from './output.js';
import { reportError } from './report-error.js';

/**
 * The start-up fast path for `sphana inspect` (bin/sphana.js takes it): the command line is
 * parsed here, without commander, when it has the one shape this parser is sure of, and the
 * command runs with what the full CLI (main.ts) would give it. Anything else — --help, -h, -V,
 * `--`, an unknown or combined flag, a file name starting with '-', no file, another command
 * first — is left to the full CLI, so its help, usage errors and exit code 2 stay commander's.
 * test/cli/fast-path.test.ts runs both paths on the same command lines and compares
 * stdout, stderr and exit codes.
 */
export interface FastCommand {
  command: 'inspect';
  files: string[];
  globals: GlobalOptions;
}

/** The global flags (main.ts's program options), each a boolean. */
const FLAGS = new Map<string, 'json' | 'verbose' | 'quiet' | 'noColor'>([
  ['--json', 'json'],
  ['--verbose', 'verbose'],
  ['-q', 'quiet'],
  ['--quiet', 'quiet'],
  ['--no-color', 'noColor'],
]);

/**
 * `args` (process.argv without node and the script) as a fast command, or undefined for the
 * full CLI. Commander reads the program's flags anywhere on the line; the first other word is
 * the command and the words after it are its files, which is what this accepts.
 */
export function parseFast(args: string[], env: NodeJS.ProcessEnv = process.env): FastCommand | undefined {
  const seen = new Set<string>();
  let command: string | undefined;
  const files: string[] = [];
  for (const arg of args) {
    if (arg.startsWith('-')) {
      const flag = FLAGS.get(arg);
      if (!flag) return undefined;
      seen.add(flag);
    } else if (command === undefined) {
      if (arg !== 'inspect') return undefined;
      command = arg;
    } else {
      files.push(arg);
    }
  }
  if (command !== 'inspect' || files.length === 0) return undefined;
  // As main.ts's globals(): NO_COLOR (non-empty) turns colour off like --no-color.
  const noColorEnv = env.NO_COLOR !== undefined && env.NO_COLOR !== '';
  return {
    command,
    files,
    globals: { json: seen.has('json'), verbose: seen.has('verbose'), quiet: seen.has('quiet'), color: !seen.has('noColor') && !noColorEnv },
  };
}

/** Runs a fast command as main() would: same guards, same output, same errors and exit codes. */
export async function runFast(parsed: FastCommand): Promise<number> {
  const { json, verbose } = parsed.globals;
  const unhookSignals = guardProcess(json);
  try {
    // No spinner module: inspect draws no spinner (Output.create would import ora on a terminal).
    return await inspect(parsed.files, {}, new Output(parsed.globals));
  } catch (error) {
    return reportError(error, { json, verbose });
  } finally {
    unhookSignals();
  }
}
