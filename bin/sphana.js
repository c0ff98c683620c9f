#!/usr/bin/env node
// The sphana command: a thin launcher for the compiled CLI in dist/ (start-up: bench/startup.ts).
// - `sphana --version` answers from package.json without loading the CLI.
// - `sphana inspect FILE...` with only the global flags runs without commander (src/cli/fast-path.ts);
//   every other shape of the line (--help, a usage error, another command) goes to the full CLI.
const args = process.argv.slice(2);
if (args.length === 1 && (args[0] === '--version' || args[0] === '-V')) {
  const { readFileSync } = await import('node:fs');
  process.stdout.write(`${JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version}\n`);
  process.exit(0);
}

const notBuilt = (error) => error && error.code === 'ERR_MODULE_NOT_FOUND' && /dist\/src\/cli\/(main|fast-path)\.js/.test(String(error.message));

async function fastPath() {
  if (!args.includes('inspect')) return undefined;
  let fast;
  try {
    fast = await import('../dist/src/cli/fast-path.js');
  } catch (error) {
    if (notBuilt(error)) return undefined; // the full CLI's import says so
    throw error;
  }
  const parsed = fast.parseFast(args);
  return parsed ? fast.runFast(parsed) : undefined;
}

const fastExit = await fastPath();
if (fastExit !== undefined) {
  process.exitCode = fastExit;
} else {
  let main;
  try {
    ({ main } = await import('../dist/src/cli/main.js'));
  } catch (error) {
    if (notBuilt(error)) {
      process.stderr.write('error E_NOT_BUILT: sphana is not built\n  hint: run `npm install` (or `npm run build`) in the sphana folder\n');
      process.exit(4);
    }
    throw error;
  }
  process.exitCode = await main(process.argv);
}
