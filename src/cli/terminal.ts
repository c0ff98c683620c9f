import { colour } from './colour.js';

/** Colours and spinners only on an interactive terminal: a TTY, not CI, not NO_COLOR, not TERM=dumb. */
export function isInteractive(stream: NodeJS.WriteStream = process.stderr, env: NodeJS.ProcessEnv = process.env): boolean {
  if (!stream.isTTY) return false;
  if (env.CI && env.CI !== 'false' && env.CI !== '0') return false;
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false;
  if (env.TERM === 'dumb') return false;
  return true;
}

export function configureColour(enabled: boolean): void {
  colour.level = enabled ? (colour.level || 1) : 0;
}

/** The styles (src/cli/colour.ts; named `chalk` because they replace it, output for output). */
export { colour as chalk };
