import assert from 'node:assert/strict';
import { execSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { BIN } from '../helpers/paths.js';

test('Ctrl-C during the export step leaves no half-written artifact and no Python behind', async () => {
  const out = mkdtempSync(join(tmpdir(), 'sphana-interrupt-'));
  try {
    const child = spawn(process.execPath, [BIN, 'export', 'smollm2-135m', '--synthetic', 'tiny', '--out', out], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, CI: 'true' } });
    let stderr = '';
    const exited = new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    await new Promise<void>((resolve, reject) => {
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
        if (/^> export/m.test(stderr) && /^ok synthesize/m.test(stderr)) resolve();
      });
      void exited.then((c) => reject(new Error(`exited ${c} early: ${stderr}`)));
    });
    await new Promise((r) => setTimeout(r, 2500));
    child.kill('SIGINT');
    assert.equal(await exited, 130, stderr);
    const onnx = join(out, '0.1.0', 'onnx');
    const left = existsSync(onnx) ? readdirSync(onnx) : [];
    assert.deepEqual(left, [], `left in onnx/: ${left.join(', ')}`);
    assert.equal(existsSync(join(out, '0.1.0', 'manifest.json')), false);
    await new Promise((r) => setTimeout(r, 500));
    const python = execSync(`ps -eo args | grep sphana_bridge | grep -F '${out}' | grep -v grep || true`, { encoding: 'utf8' });
    assert.equal(python.trim(), '');
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
