import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../artifacts/files.js';

/**
 * What each finished step recorded: a fingerprint of its inputs and the size and mtime of
 * every output. A rerun skips a step whose fingerprint matches and whose outputs are unchanged.
 */
export const STATE_FILE = '.sphana-state.json';

export interface StepRecord {
  fingerprint: string;
  outputs: Record<string, { bytes: number; mtimeMs: number }>;
  result: unknown;
  seconds: number;
  finishedAt: string;
}

export interface PipelineState {
  version: 1;
  steps: Record<string, StepRecord>;
}

export function fingerprint(value: unknown): string {
  return createHash('sha256').update(JSON.stringify(value)).digest('hex').slice(0, 16);
}

export class StateStore {
  private state: PipelineState;

  constructor(private readonly dir: string) {
    this.state = { version: 1, steps: {} };
    const path = join(dir, STATE_FILE);
    if (existsSync(path)) {
      try {
        const loaded = JSON.parse(readFileSync(path, 'utf8')) as PipelineState;
        if (loaded.version === 1 && loaded.steps) this.state = loaded;
      } catch {
        // An unreadable state only means nothing is skipped.
      }
    }
  }

  /** The recorded result when the step is up to date, else undefined. */
  upToDate(step: string, print: string): StepRecord | undefined {
    const record = this.state.steps[step];
    if (!record || record.fingerprint !== print) return undefined;
    for (const [path, want] of Object.entries(record.outputs)) {
      const abs = join(this.dir, path);
      if (!existsSync(abs)) return undefined;
      const stat = statSync(abs);
      if (stat.size !== want.bytes || Math.round(stat.mtimeMs) !== want.mtimeMs) return undefined;
    }
    return record;
  }

  /** The recorded result of a step run with these inputs, whether or not its outputs are still there. */
  resultOf(step: string, print: string): unknown {
    const record = this.state.steps[step];
    return record && record.fingerprint === print ? record.result : undefined;
  }

  record(step: string, print: string, outputs: string[], result: unknown, seconds: number): void {
    const files: StepRecord['outputs'] = {};
    for (const path of outputs) {
      const stat = statSync(join(this.dir, path));
      files[path] = { bytes: stat.size, mtimeMs: Math.round(stat.mtimeMs) };
    }
    this.state.steps[step] = { fingerprint: print, outputs: files, result, seconds, finishedAt: new Date().toISOString() };
    writeFileAtomic(join(this.dir, STATE_FILE), `${JSON.stringify(this.state, null, 2)}\n`);
  }

  forget(step: string): void {
    delete this.state.steps[step];
  }
}
