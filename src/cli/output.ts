import type { Ora } from 'ora';
import { jsonTerminalSafe, terminalSafe } from './escape.js';
import { chalk, configureColour, isInteractive } from './terminal.js';

export interface GlobalOptions {
  json: boolean;
  verbose: boolean;
  quiet: boolean;
  color: boolean;
}

export interface Step {
  succeed(detail?: string): number;
  fail(detail?: string): number;
  update(text: string): void;
}

/**
 * Where a command's words go. Results go to stdout (with --json: one JSON document and
 * nothing else); everything meant for people — progress, notes, warnings — goes to stderr.
 * Every human-readable text passes through terminalSafe (src/cli/escape.ts): no control
 * character from a model, manifest or log reaches the terminal; JSON stays exact JSON.
 */
export class Output {
  readonly interactive: boolean;

  /** ora, loaded only when this output will draw spinners (an interactive terminal). */
  private ora?: typeof import('ora').default;

  constructor(readonly options: GlobalOptions, private readonly stdout = process.stdout, private readonly stderr = process.stderr) {
    this.interactive = isInteractive(stderr) && options.color;
    configureColour(this.interactive);
  }

  private safe(text: string, keepNewlines = true): string {
    return terminalSafe(text, { keepNewlines, keepColour: chalk.level > 0 });
  }

  /** An Output whose spinner module is loaded when it will be used (ora costs tens of ms to import). */
  static async create(options: GlobalOptions, stdout = process.stdout, stderr = process.stderr): Promise<Output> {
    const out = new Output(options, stdout, stderr);
    if (out.interactive && !options.quiet) out.ora = (await import('ora')).default;
    return out;
  }

  /** A line of the command's human-readable result (stdout; suppressed with --json). */
  result(text: string): void {
    if (!this.options.json) this.stdout.write(`${this.safe(text)}\n`);
  }

  /** One JSON document on stdout (only with --json). */
  json(value: string): void {
    if (this.options.json) this.stdout.write(`${jsonTerminalSafe(value)}\n`);
  }

  info(text: string): void {
    if (!this.options.quiet) this.stderr.write(`${this.safe(text)}\n`);
  }

  /** One line: a newline inside `text` is shown as \n. */
  warn(text: string): void {
    this.stderr.write(`${chalk.yellow('warning')}: ${this.safe(text, false)}\n`);
  }

  debug(text: string): void {
    if (this.options.verbose) this.stderr.write(`${chalk.dim(this.safe(text, false))}\n`);
  }

  /**
   * A spinner on a terminal, plain start/end lines elsewhere; returns elapsed seconds on finish.
   * `update` shows progress: in the spinner with the elapsed time, or (not a terminal) as a plain
   * line at most every `plainEverySeconds` (the latest figure wins; nothing on stdout).
   */
  step(rawLabel: string, plainEverySeconds = PLAIN_PROGRESS_SECONDS): Step {
    const label = this.safe(rawLabel, false);
    const started = performance.now();
    const elapsed = () => (performance.now() - started) / 1000;
    let spinner: Ora | undefined;
    let latest = '';
    let timer: NodeJS.Timeout | undefined;
    let lastPlain = 0;
    const spinnerText = () => `${label}${latest ? ` ${chalk.dim(latest)}` : ''} ${chalk.dim(`${Math.floor(elapsed())}s`)}`;
    if (this.ora && this.interactive && !this.options.quiet) {
      spinner = this.ora({ text: label, stream: this.stderr }).start();
      timer = setInterval(() => { if (spinner) spinner.text = spinnerText(); }, 1000);
      timer.unref();
    } else {
      this.info(`> ${label}`);
    }
    const finish = (ok: boolean, rawDetail?: string) => {
      const detail = rawDetail === undefined ? undefined : this.safe(rawDetail, false);
      if (timer) clearInterval(timer);
      const seconds = elapsed();
      const text = `${label}${detail ? ` ${chalk.dim(detail)}` : ''} ${chalk.dim(`(${seconds.toFixed(1)}s)`)}`;
      if (spinner) {
        if (ok) spinner.succeed(text);
        else spinner.fail(text);
      } else if (!ok || !this.options.quiet) {
        this.stderr.write(`${ok ? 'ok' : 'FAILED'} ${text}\n`);
      }
      return seconds;
    };
    return {
      succeed: (detail) => finish(true, detail),
      fail: (detail) => finish(false, detail),
      update: (text) => {
        latest = this.safe(text, false);
        if (spinner) {
          spinner.text = spinnerText();
          return;
        }
        const now = elapsed();
        if (!this.options.quiet && now - lastPlain >= plainEverySeconds) {
          lastPlain = now;
          this.stderr.write(`  ${label}: ${latest} (${now.toFixed(0)}s)\n`);
        } else {
          this.debug(`  ${text}`);
        }
      },
    };
  }
}

/** Plain (CI) progress lines: at most one per step this often. */
export const PLAIN_PROGRESS_SECONDS = 5;
