import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, test } from 'node:test';
import { parseFast } from '../../src/cli/fast-path.js';
import { ANSI, type CliResult, sphana } from '../helpers/cli.js';
import { BIN, FIXTURES, ROOT, fixture, listFiles } from '../helpers/paths.js';

/**
 * `sphana inspect` has a start-up fast path (src/cli/fast-path.ts, taken by bin/sphana.js) that
 * parses its few flags without commander. It must be invisible: for every command line it
 * takes, stdout, stderr and the exit code equal the full CLI's (main.ts through commander) —
 * human and --json output, several files, errors, warnings, -q/--quiet, --no-color, NO_COLOR,
 * --verbose and a real terminal (colour on). Every other line must be left to the full CLI.
 */
const dir = mkdtempSync(join(tmpdir(), 'sphana-fast-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const FULL = join(dir, 'full.mjs');
writeFileSync(FULL, `const { main } = await import(${JSON.stringify(pathToFileURL(join(ROOT, 'dist/src/cli/main.js')).href)});
process.exitCode = await main(process.argv);
`);

/** The full CLI (commander), as bin/sphana.js runs it for any line the fast path does not take. */
function full(args: string[], env: NodeJS.ProcessEnv = {}): CliResult {
  const r = spawnSync(process.execPath, [FULL, ...args], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, ...env }, maxBuffer: 1 << 26 });
  return { exitCode: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

const ALL = listFiles(FIXTURES, '.onnx');
const kv = fixture('valid/kv_optimum.onnx');
const mlp = fixture('valid/mlp.onnx');
const extMissing = fixture('hostile/ext_missing/model.onnx');
const notOnnx = fixture('hostile/tensor_proto.onnx');

function same(args: string[], env: NodeJS.ProcessEnv = {}): CliResult {
  assert.ok(parseFast(args, { ...process.env, ...env }), `the fast path takes ${args.join(' ')}`);
  const fast = sphana(args, env);
  const slow = full(args, env);
  assert.equal(fast.stdout, slow.stdout, `stdout of ${args.join(' ')}`);
  assert.equal(fast.stderr, slow.stderr, `stderr of ${args.join(' ')}`);
  assert.equal(fast.exitCode, slow.exitCode, `exit code of ${args.join(' ')}`);
  return fast;
}

test('every fixture, human and --json, in one run each: the fast path prints what commander does', () => {
  assert.ok(ALL.length >= 50, `${ALL.length} fixtures`);
  const human = same(['inspect', ...ALL]);
  assert.equal(human.exitCode, 3); // the hostile ones fail, the valid ones print
  assert.match(human.stdout, /kv cache: 3 layers/);
  assert.match(human.stderr, /error E_NOT_ONNX/);
  assert.match(human.stderr, /warning/);
  const json = same(['inspect', '--json', ...ALL]);
  assert.equal(json.stdout.trimEnd().split('\n').length, ALL.length);
  assert.doesNotMatch(json.stdout + json.stderr, ANSI);
});

test('flags anywhere on the line, as commander reads them; a missing file; a file named inspect', () => {
  assert.equal(same(['--json', 'inspect', kv, 'missing.onnx']).exitCode, 3);
  assert.equal(same(['inspect', kv, '--json']).exitCode, 0);
  assert.equal(same(['-q', 'inspect', extMissing]).exitCode, 3);
  assert.equal(same(['inspect', extMissing, '--quiet', '--json']).exitCode, 3);
  assert.equal(same(['inspect', '--no-color', kv, mlp]).exitCode, 0);
  assert.equal(same(['inspect', '--json', '--json', mlp]).exitCode, 0);
  assert.equal(same(['inspect', 'inspect']).exitCode, 3);
  assert.equal(same(['inspect', mlp], { NO_COLOR: '1' }).exitCode, 0);
});

test('errors: one line and a hint; --verbose adds the stack (its frames differ by path, nothing else)', () => {
  const plain = same(['inspect', notOnnx, mlp]);
  assert.equal(plain.exitCode, 3);
  const args = ['inspect', '--verbose', notOnnx, '--json'];
  assert.ok(parseFast(args));
  const fast = sphana(args);
  const slow = full(args);
  const frames = /^ {4}at .*\n/gm;
  assert.ok((fast.stderr.match(frames) ?? []).length > 0 && (slow.stderr.match(frames) ?? []).length > 0, 'both print a stack');
  assert.equal(fast.stderr.replace(frames, ''), slow.stderr.replace(frames, ''));
  assert.equal(fast.stdout, slow.stdout);
  assert.equal(fast.exitCode, slow.exitCode);
});

test('on a terminal (a pty): the same coloured bytes from both paths', (t) => {
  if (spawnSync('script', ['--version']).status !== 0) return t.skip('no `script` (util-linux) to make a pty');
  const env = { ...process.env, CI: '', NO_COLOR: '', TERM: 'xterm-256color' };
  const onPty = (cmd: string[]) => {
    const line = cmd.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
    const r = spawnSync('script', ['-qec', line, '/dev/null'], { cwd: ROOT, encoding: 'utf8', env });
    return { exitCode: r.status ?? -1, out: r.stdout };
  };
  for (const files of [[kv, extMissing, notOnnx], [fixture('valid/quant_matmulnbits4.onnx'), fixture('valid/ext_two_files/model.onnx')]]) {
    const fast = onPty([process.execPath, BIN, 'inspect', ...files]);
    const slow = onPty([process.execPath, FULL, 'inspect', ...files]);
    assert.match(fast.out, ANSI, 'colour on a terminal');
    assert.equal(fast.out, slow.out);
    assert.equal(fast.exitCode, slow.exitCode);
  }
  const noColour = onPty([process.execPath, BIN, 'inspect', '--no-color', kv, extMissing]);
  assert.doesNotMatch(noColour.out, ANSI);
  assert.equal(noColour.out, onPty([process.execPath, FULL, 'inspect', '--no-color', kv, extMissing]).out);
});

test('every other line is left to the full CLI: help, usage errors, `--`, combined or unknown flags', () => {
  const left = [
    ['inspect'], ['--json', 'inspect'], ['inspect', '--help', mlp], ['inspect', '-h'], ['help', 'inspect'],
    ['inspect', '--bogus', mlp], ['inspect', '--json=1', mlp], ['inspect', '-qq', mlp], ['inspect', '--', mlp],
    ['inspect', '-', mlp], ['inspect', '-V', mlp], ['inspect', '--version', mlp], ['inspect', '--color', mlp],
    [mlp, 'inspect'], ['verify', 'inspect'], ['models'], [],
  ];
  for (const args of left) assert.equal(parseFast(args), undefined, args.join(' '));
  assert.deepEqual(parseFast(['-q', 'inspect', 'a', '--no-color', 'b'], {}), {
    command: 'inspect', files: ['a', 'b'], globals: { json: false, verbose: false, quiet: true, color: false },
  });
  // Through the launcher these still behave as commander makes them.
  assert.equal(sphana(['inspect']).exitCode, 2);
  assert.equal(sphana(['inspect', '--bogus', mlp]).exitCode, 2);
  const help = sphana(['inspect', '--help']);
  assert.equal(help.exitCode, 0);
  assert.equal(help.stdout, full(['inspect', '--help']).stdout);
  assert.match(help.stdout, /Usage: sphana inspect/);
});
