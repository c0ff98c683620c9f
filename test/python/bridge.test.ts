import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { EnvironmentError, InterruptedError } from '../../src/errors.js';
import { BridgeError, type BridgeProgress, callBridge } from '../../src/python/bridge.js';
import { parseQuantize, parseVersions } from '../../src/python/entry-points.js';
import { bridgeDir } from '../../src/python/environment.js';
import { makeFakeBridge } from './fake-bridge.js';
import { alive, eventually, script, tempDir } from './helpers.js';

const fake = makeFakeBridge();
const identity = (data: unknown) => data;
const call = <T>(request: Record<string, unknown>, parse: (data: unknown) => T = identity as (d: unknown) => T, extra = {}) =>
  callBridge('test', request, { pythonCommand: fake.pythonCommand, parse, ...extra });

const pidFile = () => join(tempDir(), 'pids.json');
const pids = (file: string) => JSON.parse(readFileSync(file, 'utf8')) as { child: number; grandchild: number };
async function assertGone(file: string) {
  const { child, grandchild } = pids(file);
  assert.equal(await eventually(() => !alive(child)), true, `child ${child} is still alive`);
  assert.equal(await eventually(() => !alive(grandchild)), true, `grandchild ${grandchild} is still alive`);
}

test('a good reply: progress lines in order, logs, then the parsed result; invocation as documented', async () => {
  const progress: BridgeProgress[] = [];
  const logs: string[] = [];
  const request = { mode: 'echo', path: "it's \"quoted\"" };
  const data = await call(request, identity, { onProgress: (p: BridgeProgress) => progress.push(p), onLog: (l: string) => logs.push(l) });
  assert.deepEqual(progress, [
    { step: 'load', fraction: null, message: 'loading' },
    { step: 'work', fraction: 0.5, message: 'half way' },
  ]);
  assert.deepEqual(logs, ['a log line']);
  assert.deepEqual(data, { argv: ['test', '--request', JSON.stringify(request)], pythonpath: bridgeDir(), unbuffered: '1' });
});

test('typed parsers accept well-formed results', async () => {
  const versions = { python: '3.11.7', packages: { onnx: '1.23.2', numpy: '2.4.6' } };
  assert.deepEqual(await call({ mode: 'result', data: versions }, parseVersions), versions);
  const quantized = {
    strategy: 'external-data', precision: 'int4', files: [{ path: '/o/model.onnx', bytes: 1024 }, { path: '/o/model.onnx.data', bytes: 5 }],
    quantizedOps: { MatMulNBits: 12 }, seconds: 3.5, notes: ['a note'],
  };
  assert.deepEqual(await call({ mode: 'result', data: quantized }, parseQuantize), quantized);
});

test('a result of the wrong shape is E_BRIDGE_PROTOCOL naming the command, request and output', async () => {
  const data = { strategy: 'direct', precision: 'int8', files: 'nope', quantizedOps: {}, seconds: 1, notes: [] };
  await assert.rejects(call({ mode: 'result', data }, parseQuantize), (error: unknown) => {
    assert.ok(error instanceof EnvironmentError);
    assert.equal(error.code, 'E_BRIDGE_PROTOCOL');
    assert.equal(error.exitCode, 4);
    assert.match(error.message, /^bridge "test" broke the protocol: unexpected result shape \(files is not an array\): /);
    assert.ok(error.message.includes('"files":"nope"'));
    assert.ok(error.message.includes('"mode":"result"'));
    assert.equal(error.details?.output, JSON.stringify(data));
    return true;
  });
  await assert.rejects(call({ mode: 'result', data: { python: 3, packages: {} } }, parseVersions), {
    code: 'E_BRIDGE_PROTOCOL',
    message: /unexpected result shape \(python is not a string\)/,
  });
});

test('an error reply becomes a BridgeError with the Python class, the right exit status and the log tail', async () => {
  const cases: Array<[string, Record<string, unknown>, string, number]> = [
    ['InputError', {}, 'E_BRIDGE_INPUT', 3],
    ['BadRequest', {}, 'E_BRIDGE_INPUT', 3],
    ['QuantizationError', {}, 'E_BRIDGE_FAILED', 1],
    ['ProtoLimitExceeded', {}, 'E_BRIDGE_FAILED', 1],
    ['Internal', { exception: 'ModuleNotFoundError' }, 'E_BRIDGE_IMPORT', 4],
    ['Internal', { exception: 'ValueError' }, 'E_BRIDGE_FAILED', 1],
  ];
  for (const [errorClass, details, code, exitCode] of cases) {
    await assert.rejects(call({ mode: 'error', errorClass, details }), (error: unknown) => {
      assert.ok(error instanceof BridgeError, errorClass);
      assert.equal(error.errorClass, errorClass);
      assert.equal(error.code, code);
      assert.equal(error.exitCode, exitCode);
      assert.equal(error.message, `test: ${errorClass}: it went wrong`);
      assert.deepEqual(error.details?.stderrTail, ['Traceback (most recent call last): ...']);
      return true;
    });
  }
});

test('a full disk or a permission error inside the bridge is an environment error (exit 4) naming the folder', async () => {
  const cases: Array<[string, string, string]> = [
    ['ENOSPC', 'E_DISK_FULL', 'free space on the disk holding /data/out/onnx'],
    ['EROFS', 'E_READ_ONLY', '/data/out/onnx is on a read-only file system'],
    ['EACCES', 'E_PERMISSION', 'check the permissions of /data/out/onnx'],
  ];
  for (const [errno, code, hint] of cases) {
    const details = { exception: 'OSError', errno, path: '/data/out/onnx/.sphana-staging-12-ab/llm_generator.onnx.data' };
    await assert.rejects(call({ mode: 'error', errorClass: 'Internal', details }), (error: unknown) => {
      assert.ok(error instanceof EnvironmentError, errno);
      assert.equal(error.code, code);
      assert.equal(error.exitCode, 4);
      assert.match(error.message, new RegExp(`^test: .*\\(${errno}: /data/out/onnx/\\.sphana-staging-12-ab/llm_generator\\.onnx\\.data\\)$`));
      assert.ok(error.hint?.includes(hint), `${errno}: ${error.hint}`);
      return true;
    });
  }
  // Any other errno stays the bridge's own failure.
  await assert.rejects(call({ mode: 'error', errorClass: 'Internal', details: { exception: 'OSError', errno: 'EIO' } }), (error: unknown) => {
    assert.ok(error instanceof BridgeError);
    assert.equal(error.code, 'E_BRIDGE_FAILED');
    return true;
  });
});

test('protocol violations are E_BRIDGE_PROTOCOL with the offending output and the stderr tail', async () => {
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ mode: 'crash' }, /^bridge "test" broke the protocol: exit status 1 without an error reply \(request .*; last log line: RuntimeError: boom\)$/],
    [{ mode: 'signal' }, /^bridge "test" broke the protocol: killed by SIGKILL without an error reply/],
    [{ mode: 'no-result' }, /^bridge "test" broke the protocol: exit status 0 without a result line/],
    [{ mode: 'error', errorClass: 'InputError', exitCode: 0 }, /an error reply with exit status 0 \(expected exit status 1\): InputError: it went wrong/],
  ];
  for (const [request, message] of cases) {
    await assert.rejects(call(request), (error: unknown) => {
      assert.ok(error instanceof EnvironmentError);
      assert.equal(error.code, 'E_BRIDGE_PROTOCOL');
      assert.match(error.message, message);
      assert.deepEqual(error.details?.request, request);
      return true;
    });
  }
});

test('a non-JSON stdout line stops the child and its group, then E_BRIDGE_PROTOCOL names the line', async () => {
  const file = pidFile();
  await assert.rejects(call({ mode: 'non-json', pidFile: file }), (error: unknown) => {
    assert.ok(error instanceof EnvironmentError);
    assert.equal(error.code, 'E_BRIDGE_PROTOCOL');
    assert.match(error.message, /^bridge "test" broke the protocol: a line on stdout is not JSON: hello world \(request /);
    assert.equal(error.details?.output, 'hello world');
    return true;
  });
  await assertGone(file);
});

test('timeout: E_BRIDGE_TIMEOUT, and the child and its grandchild (which ignores SIGTERM) are gone', async () => {
  const file = pidFile();
  await assert.rejects(call({ mode: 'hang', pidFile: file }, identity, { timeoutMs: 3000 }), (error: unknown) => {
    assert.ok(error instanceof EnvironmentError);
    assert.equal(error.code, 'E_BRIDGE_TIMEOUT');
    assert.equal(error.message, 'bridge "test" did not finish within 3.0 s');
    return true;
  });
  await assertGone(file);
});

test('abort: InterruptedError, and the whole process group is gone', async () => {
  const file = pidFile();
  const controller = new AbortController();
  const onProgress = (p: BridgeProgress) => {
    if (p.step === 'started') controller.abort();
  };
  await assert.rejects(call({ mode: 'hang', pidFile: file }, identity, { signal: controller.signal, onProgress }), (error: unknown) => {
    assert.ok(error instanceof InterruptedError);
    assert.equal(error.exitCode, 130);
    return true;
  });
  await assertGone(file);
  await assert.rejects(call({ mode: 'echo' }, identity, { signal: controller.signal }), InterruptedError);
});

test('a process the bridge leaves behind after its result is stopped too', async () => {
  const file = pidFile();
  assert.deepEqual(await call({ mode: 'straggler', pidFile: file }), { ok: true });
  await assertGone(file);
});

test('a bridge that cannot be started is E_BRIDGE_ENV', async () => {
  await assert.rejects(callBridge('test', {}, { pythonCommand: [join(tempDir(), 'missing-python')], parse: identity }), {
    code: 'E_BRIDGE_ENV',
    message: /^could not start the bridge for "test": .*missing-python \(ENOENT\)$/,
  });
});

/** Runs a Node process that calls the bridge, interrupts it with `signal` once the fake started, and checks nothing survives. */
async function interruptDriver(mainLike: boolean, signal: NodeJS.Signals) {
  const file = pidFile();
  const bridgeModule = fileURLToPath(new URL('../../src/python/bridge.js', import.meta.url));
  const driver = script(join(tempDir(), 'driver.mjs'), `
const { callBridge } = await import(${JSON.stringify(bridgeModule)});
// Like src/cli/main.ts: a SIGINT handler that exits at once.
if (${mainLike}) process.once('SIGINT', () => process.exit(130));
try {
  await callBridge('test', { mode: 'hang', pidFile: ${JSON.stringify(file)} }, {
    pythonCommand: ${JSON.stringify(fake.pythonCommand)}, parse: (d) => d,
    onProgress: (p) => { if (p.step === 'started') process.stdout.write('ready\\n'); },
  });
  process.stdout.write('finished\\n');
} catch (error) {
  process.stdout.write(error.code + '\\n');
  process.exitCode = error.exitCode;
}
`);
  const child = spawn(process.execPath, [driver], { stdio: ['ignore', 'pipe', 'inherit'] });
  let stdout = '';
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  await new Promise<void>((resolve) => child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
    if (stdout.includes('ready')) resolve();
  }));
  child.kill(signal);
  const code = await exited;
  await assertGone(file);
  return { code, stdout };
}

test('Ctrl-C in the parent: InterruptedError (exit 130) and no Python-side process survives', async () => {
  assert.deepEqual(await interruptDriver(false, 'SIGINT'), { code: 130, stdout: 'ready\nE_INTERRUPTED\n' });
  assert.deepEqual(await interruptDriver(false, 'SIGTERM'), { code: 130, stdout: 'ready\nE_INTERRUPTED\n' });
});

test('Ctrl-C with a handler that exits at once (as sphana\'s main does): the exit hook kills the group', async () => {
  assert.deepEqual(await interruptDriver(true, 'SIGINT'), { code: 130, stdout: 'ready\n' });
});
