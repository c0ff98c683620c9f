import { type BridgeEnvironment, ensureBridgeEnvironment, inspectBridgeEnvironment } from '../python/environment.js';

/** The part of the pipeline's events and step list this step reports to. */
export interface StepSink {
  start(step: string, label: string): void;
  progress(step: string, message: string): void;
  done(step: string, info: { seconds: number; skipped: boolean; detail?: string }): void;
  failed(step: string, error: unknown): void;
}

export const ENVIRONMENT_STEP = 'environment';

/**
 * The bridge's Python environment as a step of its own: silent when it is already healthy, otherwise
 * "Python environment (first run)" with pip's figures ("collecting torch 2.13.0 (3/45)") and the
 * elapsed time, so the minutes spent installing torch are not hidden inside the next step.
 */
export async function environmentStep(
  events: StepSink, options: { signal?: AbortSignal; record?: (seconds: number) => void } = {},
): Promise<BridgeEnvironment> {
  const status = await inspectBridgeEnvironment();
  if (status.healthy) return ensureBridgeEnvironment({ signal: options.signal });
  const label = status.exists ? `Python environment (rebuilding: ${status.problem})` : 'Python environment (first run)';
  events.start(ENVIRONMENT_STEP, label);
  const t0 = performance.now();
  try {
    const env = await ensureBridgeEnvironment({ signal: options.signal, onProgress: (m) => events.progress(ENVIRONMENT_STEP, m) });
    const seconds = (performance.now() - t0) / 1000;
    events.done(ENVIRONMENT_STEP, { seconds, skipped: false, detail: env.venvDir });
    options.record?.(seconds);
    return env;
  } catch (error) {
    events.failed(ENVIRONMENT_STEP, error);
    throw error;
  }
}

