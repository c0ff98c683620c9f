#!/usr/bin/env node
// The sphana command: a thin launcher for the compiled CLI in dist/.
// `sphana --version` answers from package.json without loading the CLI (start-up: bench/startup.ts).
const args = process.argv.slice(2);
if (args.length === 1 && (args[0] === '--version' || args[0] === '-V')) {
  const { readFileSync } = await import('node:fs');
  process.stdout.write(`${JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version}\n`);
  process.exit(0);
}
let main;
try {
  ({ main } = await import('../dist/src/cli/main.js'));
} catch (error) {
  if (error && error.code === 'ERR_MODULE_NOT_FOUND' && String(error.message).includes('dist/src/cli/main.js')) {
    process.stderr.write('error E_NOT_BUILT: sphana is not built\n  hint: run `npm install` (or `npm run build`) in the sphana folder\n');
    process.exit(4);
  }
  throw error;
}
process.exitCode = await main(process.argv);
