import type { Output } from '../cli/output.js';
import { environmentStep } from '../pipeline/environment-step.js';

export interface SetupOptions {}

/** `sphana setup`: creates the bridge's Python environment ahead of the first export (a no-op when it is healthy). */
export async function run(_args: string[], _options: SetupOptions, out: Output): Promise<number> {
  const open = new Map<string, ReturnType<Output['step']>>();
  let seconds = 0;
  const env = await environmentStep({
    start: (step, label) => open.set(step, out.step(label)),
    progress: (step, message) => open.get(step)?.update(message),
    done: (step, info) => { open.get(step)?.succeed(info.detail); open.delete(step); },
    failed: (step) => { open.get(step)?.fail(); open.delete(step); },
  }, { record: (s) => { seconds = s; } });
  out.json(JSON.stringify({ python: env.python, venvDir: env.venvDir, requirementsHash: env.requirementsHash, created: env.created, seconds }));
  out.result(`bridge environment ${env.created ? 'created' : 'ready'}: ${env.venvDir}`);
  return 0;
}
