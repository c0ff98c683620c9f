/**
 * Every numeric and enumerated flag is parsed and checked by commander (src/cli/options.ts):
 * a bad value stops the command before any work with one usage line (exit 2) naming the flag, the
 * value and what it accepts; a good one reaches the command typed.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Command, CommanderError } from 'commander';
import { buildProgram } from '../../src/cli/main.js';
import { usageErrorLine } from '../../src/cli/options.js';
import { sphana } from '../helpers/cli.js';

class Parsed extends Error {
  constructor(readonly options: Record<string, unknown>) { super('parsed'); }
}

/** Parses argv in-process: the options a command would receive, or commander's error message. */
async function parse(args: string[]): Promise<{ options?: Record<string, unknown>; error?: string }> {
  const program = buildProgram(() => {});
  let written = '';
  const quiet = { writeErr: () => {}, writeOut: () => {}, outputError: (s: string) => { written += usageErrorLine(s); } }; // as main() writes it (the last test runs the real binary)
  for (const c of [program, ...program.commands]) {
    c.exitOverride().configureOutput(quiet);
    if (c !== program) c.hook('preAction', (_: Command, action: Command) => { throw new Parsed(action.opts()); });
  }
  try {
    await program.parseAsync(['node', 'sphana', ...args]);
  } catch (error) {
    if (error instanceof Parsed) return { options: error.options };
    if (error instanceof CommanderError) return { error: written.trim() };
    throw error;
  }
  throw new Error('neither parsed nor refused');
}

// [command and flag, bad value, the accepted values as the message states them]
const BAD: Array<[string[], string, string]> = [
  [['export', 'm', '--synthetic'], 'huge', 'Allowed choices are tiny, full.'],
  [['export', 'm', '--precision'], 'int3', 'Allowed choices are int8, int4.'],
  [['export', 'm', '--strategy'], 'fast', 'Allowed choices are auto, direct, external-data, embedding-split.'],
  [['export', 'm', '--exporter'], 'jit', 'Allowed choices are dynamo, torchscript.'],
  [['export', 'm', '--optimize'], 'fast', 'Allowed choices are none, ort.'],
  [['export', 'm', '--seed'], '-1', 'It takes an integer ≥ 0.'],
  [['export', 'm', '--seed'], '1.5', 'It takes an integer ≥ 0.'],
  [['export', 'm', '--threads'], 'abc', 'It takes an integer ≥ 1.'],
  [['export', 'm', '--threads'], '0', 'It takes an integer ≥ 1.'],
  [['export', 'm', '--int8-scheme'], 'fp8', 'Allowed choices are weight-only, dynamic.'],
  [['export', 'm', '--accuracy-level'], '7', 'Allowed choices are 0, 1, 2, 3, 4.'],
  [['export', 'm', '--block-size'], '48', 'Allowed choices are 16, 32, 64, 128.'],
  [['export', 'm', '--head-bits'], '2', 'Allowed choices are 8, 4.'],
  [['export', 'm', '--embedding-bits'], 'eight', 'Allowed choices are 8, 4.'],
  [['export', 'm', '--int4-algorithm'], 'gptq', 'Allowed choices are rtn, rtn-float-zp, hqq.'],
  [['quantize', 'm.onnx', '--strategy'], 'x', 'Allowed choices are auto, direct, external-data, embedding-split.'],
  [['quantize', 'm.onnx', '--precision'], 'fp16', 'Allowed choices are int8, int4.'],
  [['quantize', 'm.onnx', '--engine'], 'fast', 'Allowed choices are streaming, ort.'],
  [['quantize', 'm.onnx', '--threads'], 'NaN', 'It takes an integer ≥ 1.'],
  [['quantize', 'm.onnx', '--accuracy-level'], '1.5', 'Allowed choices are 0, 1, 2, 3, 4.'],
  [['verify', 'a', '--tokens'], 'many', 'It takes an integer from 1 to 4096.'],
  [['verify', 'a', '--tokens'], '5000', 'It takes an integer from 1 to 4096.'],
  [['verify', 'a', '--threads'], '2x', 'It takes an integer ≥ 1.'],
  [['verify', 'a', '--precision'], 'int8,int9', 'Allowed: a comma-separated list of fp32, fp16, int8, int4.'],
  [['verify', 'a', '--top1'], '1.2', 'It takes a number from 0 to 1.'],
  [['verify', 'a', '--cosine'], 'high', 'It takes a number from -1 to 1.'],
  [['verify', 'a', '--kl'], '-0.1', 'It takes a number ≥ 0.'],
  [['deploy', 'a', '--precision'], 'int2', 'Allowed choices are fp32, fp16, int8, int4.'],
  [['deploy', 'a', '--layout'], 'docker', 'Allowed choices are plain, genai, transformers.js.'],
];

test('every bad numeric or enumerated value is refused naming the flag, the value and what it accepts', async () => {
  for (const [args, value, accepted] of BAD) {
    const flag = args[args.length - 1];
    const r = await parse([...args, value]);
    assert.equal(r.options, undefined, `${args.join(' ')} ${value} was accepted`);
    assert.match(r.error!, new RegExp(`^error E_USAGE: option '${flag} <\\w+>' argument '${value.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}' is invalid\\. `), r.error);
    assert.ok(r.error!.endsWith(accepted), `${r.error} should end with ${accepted}`);
    assert.equal(r.error!.split('\n').length, 1, r.error);
  }
});

test('good values reach the command typed, with the shared defaults', async () => {
  const exp = (await parse(['export', 'm', '--threads', '3', '--seed', '7', '--accuracy-level', '0', '--head-bits', '4', '--block-size', '64'])).options!;
  assert.deepEqual([exp.threads, exp.seed, exp.accuracyLevel, exp.headBits, exp.blockSize, exp.precision, exp.strategy, exp.exporter, exp.optimize],
    [3, 7, 0, 4, 64, 'int8', 'auto', 'dynamo', 'ort']);
  const q = (await parse(['quantize', 'm.onnx'])).options!;
  assert.equal(q.engine, 'streaming');
  assert.equal(q.threads, undefined);
  const v = (await parse(['verify', 'a', '--precision', 'int8, fp32', '--top1', '0.9', '--kl', '0.2'])).options!;
  assert.deepEqual([v.precision, v.top1, v.kl, v.tokens], [['int8', 'fp32'], 0.9, 0.2, 16]);
});

test('the real binary: `--threads abc` is a usage error (exit 2), not a corrupt model; --json carries it too', () => {
  const r = sphana(['quantize', 'no-such.onnx', '--threads', 'abc']);
  assert.equal(r.exitCode, 2, r.stderr);
  assert.deepEqual(r.stderr.split('\n'), [
    "error E_USAGE: option '--threads <n>' argument 'abc' is invalid. It takes an integer ≥ 1.", '  hint: run with --help for usage', '']);
  const j = sphana(['--json', 'export', 'smollm2-135m', '--accuracy-level', '9']);
  assert.equal(j.exitCode, 2);
  assert.deepEqual(JSON.parse(j.stdout), { error: { code: 'E_USAGE', message: "option '--accuracy-level <n>' argument '9' is invalid. Allowed choices are 0, 1, 2, 3, 4." } });
  // Flags that are each valid but do not go together are the command's usage errors, in the same shape.
  const combo = sphana(['quantize', 'no-such.onnx', '--block-size', '64']);
  assert.equal(combo.exitCode, 2);
  assert.match(combo.stderr, /^error E_USAGE: --block-size, --symmetric, --head-bits and --int4-algorithm apply to --precision int4$/m);
});
