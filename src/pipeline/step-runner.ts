/**
 * Runs the export's steps: each one reports start/done/failed through the pipeline's events, is
 * skipped when its recorded inputs (its fingerprint) and outputs still match, and is timed.
 */
import { relative } from 'node:path';
import type { StateStore } from './state.js';

export interface PipelineEvents {
  start(step: string, label: string): void;
  progress(step: string, message: string): void;
  done(step: string, info: { seconds: number; skipped: boolean; detail?: string }): void;
  failed(step: string, error: unknown): void;
}

export interface StepTiming { step: string; seconds: number; skipped: boolean; detail?: string }

export class StepRunner {
  readonly timings: StepTiming[] = [];

  constructor(private readonly dir: string, private readonly state: StateStore, private readonly events: PipelineEvents, private readonly force: boolean) {}

  /** Runs `run` unless the step is up to date (then returns its recorded result); records its outputs (paths under dir). */
  async run<T>(name: string, label: string, print: string, outputs: () => string[], run: () => Promise<{ result: T; detail?: string }>): Promise<T> {
    const cached = this.force ? undefined : this.state.upToDate(name, print);
    this.events.start(name, label);
    if (cached) {
      this.events.done(name, { seconds: 0, skipped: true, detail: 'up to date' });
      this.timings.push({ step: name, seconds: 0, skipped: true });
      return cached.result as T;
    }
    const t0 = performance.now();
    try {
      const { result, detail } = await run();
      const seconds = (performance.now() - t0) / 1000;
      this.state.record(name, print, outputs().map((p) => relative(this.dir, p)), result, seconds);
      this.events.done(name, { seconds, skipped: false, detail });
      this.timings.push({ step: name, seconds, skipped: false, detail });
      return result;
    } catch (error) {
      this.events.failed(name, error);
      throw error;
    }
  }

  /** A step that always runs and records nothing (the manifest). */
  async always<T>(name: string, label: string, run: () => Promise<T>): Promise<T> {
    const t0 = performance.now();
    this.events.start(name, label);
    const result = await run();
    this.events.done(name, { seconds: (performance.now() - t0) / 1000, skipped: false });
    this.timings.push({ step: name, seconds: (performance.now() - t0) / 1000, skipped: false });
    return result;
  }
}
