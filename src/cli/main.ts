import { QUANT_FLAG_HELP } from '../quantize/cli-options.js';
import {
  ACCURACY_LEVELS, BLOCK_SIZES, DEFAULT_OPTIMIZE, EXPORTERS, INT4_ALGORITHMS, INT8_ENGINES, INT8_SCHEMES, OPTIMIZE_MODES, PRECISIONS, QUANT_DEFAULTS,
  QUANT_PRECISIONS, STRATEGY_CHOICES, SYNTHETIC_SIZES, TABLE_BITS,
} from '../vocabulary.js';
import { LAYOUTS } from '../artifacts/layouts.js';
import { choiceOption, integerOption, listOption, numberChoiceOption, numberOption, usageErrorLine } from './options.js';
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { ExitCode, UsageError } from '../errors.js';
import { guardProcess } from './guards.js';
import { type GlobalOptions, Output } from './output.js';
import { reportError } from './report-error.js';

export { reportError };

/** What every command module exports: it computes, prints through Output and returns an exit code. */
export type CommandRun<O> = (args: string[], options: O, out: Output) => Promise<number>;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

function globals(command: Command): GlobalOptions {
  const o = command.optsWithGlobals() as Partial<GlobalOptions>;
  const noColor = process.env.NO_COLOR !== undefined && process.env.NO_COLOR !== '';
  return { json: !!o.json, verbose: !!o.verbose, quiet: !!o.quiet, color: o.color !== false && !noColor };
}

/** Builds the program; each command's module is imported only when it runs. */
export function buildProgram(onExit: (code: number) => void): Command {
  const program = new Command('sphana')
    .description('Turn a Hugging Face decoder LLM into verified, deployable ONNX artifacts.')
    .version(version(), '-V, --version')
    .option('--json', 'print one JSON document per result on stdout; everything for people goes to stderr')
    .option('--verbose', 'more detail, and stack traces on errors')
    .option('-q, --quiet', 'only results and errors')
    .option('--no-color', 'never colour the output')
    .showHelpAfterError('  hint: run with --help for usage')
    .addHelpText('after', `
Exit codes:
  0   success
  1   the job ran and a check failed (verification, parity, a reported problem)
  2   usage error (unknown command or option, missing argument)
  3   bad input (missing, corrupt or unsupported file or model name)
  4   environment problem (Python missing, bridge environment broken, disk full, no permission, folder locked)
  70  internal error (a bug in sphana: please report it)
  129 hung up (SIGHUP)
  130 interrupted (Ctrl-C)
  143 terminated (SIGTERM)`);

  const run = <O>(load: () => Promise<{ run: CommandRun<O> }>) =>
    async function (this: Command, ...all: unknown[]) {
      const command = all[all.length - 1] as Command;
      const out = await Output.create(globals(command));
      const args = command.args;
      const options = command.opts() as O;
      const module = await load();
      onExit(await module.run(args, options, out));
    };

  program
    .command('export')
    .description('Hugging Face weights → ONNX with KV cache, INT8 twin, tokenizer and manifest, verified')
    .argument('<model>', 'a preset (`sphana models`), a local Hugging Face folder, or a .gguf file')
    .addOption(choiceOption('--synthetic <size>', 'random weights from the preset\'s architecture (no download)', SYNTHETIC_SIZES))
    .option('--weights <dir>', 'use the weights in this Hugging Face folder')
    .option('--revision <rev>', 'hub revision', 'main')
    .option('--offline', 'never download')
    .option('--out <dir>', 'artifact root', 'target/artifacts/llm')
    .option('--artifact-version <v>', 'artifact version (a folder under --out)', '0.1.0')
    .addOption(choiceOption('--precision <p>', 'the quantized twin', QUANT_PRECISIONS, 'int8'))
    .addOption(choiceOption('--strategy <name>', 'quantization strategy', STRATEGY_CHOICES, 'auto'))
    .addOption(choiceOption('--exporter <name>', 'torch.onnx exporter', EXPORTERS, 'dynamo'))
    .addOption(choiceOption('--optimize <mode>', 'onnxruntime fusions in the export, parity-gated (none: the unfused graph)', OPTIMIZE_MODES, DEFAULT_OPTIMIZE))
    .addOption(integerOption('--seed <n>', 'seed for synthetic weights', { min: 0 }, 0))
    .option('--force', 'redo every step')
    .option('--no-verify', 'skip the verification step')
    .addOption(integerOption('--threads <n>', 'onnxruntime threads for checks', { min: 1 }))
    .option('--dry-run', 'print the plan (steps, skips on resume, weights source, disk and memory estimates) and stop; exit 1 if this machine lacks them')
    .action(run(() => import('../commands/export.js')));

  program
    .command('inspect')
    .description('summarise ONNX files: I/O, KV cache, ops, parameters, quantization, external data')
    .argument('<files...>', 'ONNX model files')
    .action(run(() => import('../commands/inspect.js')));

  program
    .command('verify')
    .description('check an artifact folder: files and sha256, KV dims, tokenizer, cache wiring, INT8 agreement, sample, speed')
    .argument('<artifact>', 'artifact folder (or its manifest.json)')
    .option('--prompt <text>', 'prompt for the cache check and the greedy sample')
    .addOption(integerOption('--tokens <n>', 'decode steps for the cache check, the sample and the speed figures', { min: 1, max: 4096 }, 16))
    .addOption(listOption('--precision <list>', `comma-separated precisions to run, of ${PRECISIONS.join(', ')} (default: every model in the manifest)`, PRECISIONS))
    .addOption(integerOption('--threads <n>', 'onnxruntime intra-op threads (default: all cores)', { min: 1 }))
    .addOption(numberOption('--top1 <x>', 'minimum margin-aware top-1 agreement with fp32, every precision (default per precision: int8 0.97, int4 0.85)', { min: 0, max: 1 }))
    .addOption(numberOption('--cosine <x>', 'minimum mean cosine similarity of the logits (default: int8 0.98, int4 0.95)', { min: -1, max: 1 }))
    .addOption(numberOption('--kl <x>', 'maximum mean KL divergence, nats (default: int8 0.05, int4 0.35)', { min: 0 }))
    .action(run(() => import('../commands/verify.js')));

  program
    .command('doctor')
    .description('check Node, onnxruntime-node, Python and the bridge environment (building it if missing)')
    .action(run(() => import('../commands/doctor.js')));

  program
    .command('setup')
    .description("create the bridge's Python environment now (the first export would otherwise do it: a few minutes)")
    .action(run(() => import('../commands/setup.js')));

  program
    .command('quantize')
    .description('quantize an ONNX model to INT8 (or INT4), falling back direct → external-data → embedding-split')
    .argument('<model>', 'the fp32 ONNX model')
    .option('-o, --output <file>', 'output path (default: MODEL.int8.onnx)')
    .addOption(choiceOption('--strategy <name>', 'quantization strategy (auto: falls back in this order)', STRATEGY_CHOICES, 'auto'))
    .addOption(choiceOption('--precision <p>', 'the precision to produce', QUANT_PRECISIONS, 'int8'))
    .option('--per-channel', 'dynamic int8: per-channel weight scales')
    .addOption(choiceOption('--engine <name>', "dynamic int8 engine: streaming (tensor by tensor, flat memory) or ort (onnxruntime's quantize_dynamic)", INT8_ENGINES, QUANT_DEFAULTS.int8Engine))
    .option('--force', 'overwrite an existing output')
    .addOption(integerOption('--threads <n>', 'onnxruntime threads for the checks', { min: 1 }))
    .action(run(() => import('../commands/quantize.js')));

  program
    .command('deploy')
    .description("copy one precision's model, tokenizer and manifest into a consumer's folder, checking every sha256")
    .argument('<artifact>', 'artifact folder (or its manifest.json)')
    .option('--to <dir>', 'the consumer folder to create')
    .addOption(choiceOption('--precision <p>', 'the precision to deploy', PRECISIONS, 'int8'))
    .addOption(choiceOption('--layout <name>', 'plain (llm_generator.onnx), genai (onnxruntime-genai) or transformers.js (onnx/model.onnx, onnx/model_int8.onnx)', LAYOUTS, 'plain'))
    .option('--force', 'replace a previous sphana deployment in that folder')
    .option('--allow-unverified', 'deploy an artifact whose verification failed or never ran')
    .action(run(() => import('../commands/deploy.js')));

  program
    .command('models')
    .description('list the built-in model presets and their dimensions')
    .action(run(() => import('../commands/models.js')));

  // The quantization settings are the same flags on both commands that quantize.
  for (const name of ['export', 'quantize']) withQuantFlags(program.commands.find((c) => c.name() === name)!);
  return program;
}

function withQuantFlags(command: Command): Command {
  return command
    .addOption(choiceOption('--int8-scheme <s>', QUANT_FLAG_HELP.int8Scheme, INT8_SCHEMES))
    .addOption(numberChoiceOption('--accuracy-level <n>', QUANT_FLAG_HELP.accuracyLevel, ACCURACY_LEVELS))
    .addOption(numberChoiceOption('--block-size <n>', QUANT_FLAG_HELP.blockSize, BLOCK_SIZES))
    .option('--symmetric', QUANT_FLAG_HELP.symmetric)
    .addOption(numberChoiceOption('--head-bits <n>', QUANT_FLAG_HELP.headBits, TABLE_BITS))
    .addOption(numberChoiceOption('--embedding-bits <n>', QUANT_FLAG_HELP.embeddingBits, TABLE_BITS))
    .addOption(choiceOption('--int4-algorithm <a>', QUANT_FLAG_HELP.int4Algorithm, INT4_ALGORITHMS));
}

export async function main(argv: string[]): Promise<number> {
  const rawJson = argv.includes('--json');
  const rawVerbose = argv.includes('--verbose');
  const unhookSignals = guardProcess(rawJson);
  let exitCode: number = ExitCode.ok;
  const program = buildProgram((code) => { exitCode = code; });
  program.exitOverride();
  const output = {
    writeErr: (s: string) => process.stderr.write(s),
    writeOut: (s: string) => process.stdout.write(s),
    // Every usage error, commander's or a command's, reads `error E_USAGE: …`.
    outputError: (s: string, write: (s: string) => void) => write(usageErrorLine(s)),
  };
  program.configureOutput(output);
  for (const sub of program.commands) sub.exitOverride().configureOutput(output);
  try {
    await program.parseAsync(argv);
    return exitCode;
  } catch (error) {
    if (error instanceof CommanderError) {
      if (error.code === 'commander.helpDisplayed' || error.code === 'commander.version' || error.code === 'commander.help') return ExitCode.ok;
      if (error.code === 'commander.executeSubCommandAsync') return ExitCode.ok;
      // commander has already printed its message.
      if (rawJson) process.stdout.write(`${JSON.stringify({ error: new UsageError(error.message.replace(/^error: /, '')).toJSON() })}\n`);
      return ExitCode.usage;
    }
    return reportError(error, { json: rawJson, verbose: rawVerbose });
  } finally {
    unhookSignals();
  }
}

