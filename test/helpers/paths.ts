import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (tests are compiled to dist/test/...). */
export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const FIXTURES = join(ROOT, 'fixtures', 'generated');
export const BIN = join(ROOT, 'bin', 'sphana.js');

/** The Python with onnx installed (set by scripts/test.js from the bridge environment). */
export function testPython(): string {
  return process.env.SPHANA_TEST_PYTHON ?? 'python3';
}

export function fixture(...parts: string[]): string {
  return join(FIXTURES, ...parts);
}

export function listFiles(dir: string, suffix: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    const stat = statSync(path, { throwIfNoEntry: false });
    if (!stat) return [];
    if (stat.isDirectory()) return listFiles(path, suffix);
    return name.endsWith(suffix) ? [path] : [];
  }).sort();
}

/** The onnx package's own backend test models, from the test Python's site-packages. */
export function onnxBackendModels(): string[] {
  const r = spawnSync(testPython(), ['-c', 'import onnx, os; print(os.path.dirname(onnx.__file__))'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`cannot locate the onnx package with ${testPython()}: ${r.stderr}`);
  return listFiles(join(r.stdout.trim(), 'backend', 'test', 'data'), '.onnx');
}
