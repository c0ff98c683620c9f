import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { EnvironmentError } from '../../src/errors.js';
import { callBridge } from '../../src/python/bridge.js';
import { makeFakeBridge } from '../python/fake-bridge.js';
import { alive, eventually, script, tempDir } from '../python/helpers.js';
import { testPython } from '../helpers/paths.js';

const fake = makeFakeBridge();
const identity = (data: unknown) => data;
const pidsOf = (file: string) => JSON.parse(readFileSync(file, 'utf8')) as { child: number; grandchild: number };

/** Issue 10, item 9: the client caps the JSON-line length. */
test('a stdout line longer than the cap is E_BRIDGE_PROTOCOL; the line is never held whole', async () => {
  const pidFile = join(tempDir(), 'pids.json');
  const before = process.memoryUsage().heapUsed;
  await assert.rejects(callBridge('test', { mode: 'long-line', chars: 32 << 20, pidFile }, {
    pythonCommand: fake.pythonCommand, parse: identity, maxLineChars: 1 << 20,
  }), (error: unknown) => {
    assert.ok(error instanceof EnvironmentError);
    assert.equal(error.code, 'E_BRIDGE_PROTOCOL');
    assert.match(error.message, /^bridge "test" broke the protocol: a stdout line longer than 1048576 characters: x{200}…/);
    assert.equal((error.details?.output as string).length, 1000);
    return true;
  });
  // 32 Mi characters were sent; far less than that was ever kept.
  assert.ok(process.memoryUsage().heapUsed - before < 24 << 20, `heap grew by ${process.memoryUsage().heapUsed - before}`);
  const { child, grandchild } = pidsOf(pidFile);
  assert.equal(await eventually(() => !alive(child) && !alive(grandchild)), true);
});

/** Issue 10, item 9: bridge calls have timeouts (here: the idle timeout every call gets). */
test('a bridge that prints nothing for the idle limit is stopped: E_BRIDGE_TIMEOUT (exit 4)', async () => {
  const pidFile = join(tempDir(), 'pids.json');
  await assert.rejects(callBridge('test', { mode: 'hang', pidFile }, { pythonCommand: fake.pythonCommand, parse: identity, idleTimeoutMs: 1500 }), (error: unknown) => {
    assert.ok(error instanceof EnvironmentError);
    assert.equal(error.code, 'E_BRIDGE_TIMEOUT');
    assert.equal(error.exitCode, 4);
    assert.equal(error.message, 'bridge "test" printed nothing for 1.5 s and was stopped');
    return true;
  });
  const { child } = pidsOf(pidFile);
  assert.equal(await eventually(() => !alive(child)), true);
});

/** Issue 10, item 6 (bridge part): the Python child exits when its Node parent dies. */
test('SIGKILL of the Node parent: the real Python bridge notices EOF on stdin, cleans up and exits', async () => {
  const dir = tempDir();
  const marker = join(dir, 'staging-marker');
  // The real sphana_bridge.cli.main, with a command that makes a "staging" file and sleeps;
  // its finally block removes the file, as Staging.abort does.
  const code = [
    'import os, sys, time',
    'import sphana_bridge.cli as c',
    'def handler(req, em):',
    '    open(req["marker"], "w").close()',
    '    try:',
    '        em.progress("started", None, str(os.getpid()))',
    '        time.sleep(600)',
    '    finally:',
    '        os.remove(req["marker"])',
    'c._resolve = lambda cmd: handler',
    'sys.exit(c.main())',
  ].join('\n');
  const bridgeModule = fileURLToPath(new URL('../../src/python/bridge.js', import.meta.url));
  const driver = script(join(dir, 'driver.mjs'), `
const { callBridge } = await import(${JSON.stringify(bridgeModule)});
await callBridge('sleep', { marker: ${JSON.stringify(marker)} }, {
  pythonCommand: [${JSON.stringify(testPython())}, '-c', ${JSON.stringify(code)}], parse: (d) => d,
  onProgress: (p) => { if (p.step === 'started') process.stdout.write('ready ' + p.message + '\\n'); },
});
`);
  const parent = spawn(process.execPath, [driver], { stdio: ['ignore', 'pipe', 'inherit'] });
  let stdout = '';
  const pid = await new Promise<number>((resolve) => parent.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
    const m = /ready (\d+)\n/.exec(stdout);
    if (m) resolve(Number(m[1]));
  }));
  assert.equal(alive(pid), true);
  assert.equal(existsSync(marker), true);
  const exited = new Promise((resolve) => parent.on('exit', resolve));
  parent.kill('SIGKILL');
  await exited;
  // Bounded: the watcher sees EOF at once; the hard exit comes at the latest after its 10 s grace.
  assert.equal(await eventually(() => !alive(pid), 30_000), true, `python ${pid} outlived its parent`);
  assert.equal(existsSync(marker), false, 'the cleanup (finally) did not run');
});
