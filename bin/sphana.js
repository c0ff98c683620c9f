#!/usr/bin/env node
// The sphana command: a thin launcher for the compiled CLI in dist/ (start-up: bench/startup.ts).
// - `sphana --version` answers from package.json without loading the CLI.
// - `sphana inspect FILE...` with only the global flags runs without commander (src/cli/fast-path.ts),
//   from one bundled script with a V8 code cache when the bundle is current (scripts/bundle-fast-path.js);
//   every other shape of the line (--help, a usage error, another command) goes to the full CLI.
// It is a CommonJS script (bin/package.json): node starts one about 8 ms of CPU sooner than an ES
// module (its loader is set up only when dist/ is imported); bench/results/startup.md.
'use strict';
const args = process.argv.slice(2);
if (args.length === 1 && (args[0] === '--version' || args[0] === '-V')) {
  const { readFileSync } = require('node:fs');
  process.stdout.write(`${JSON.parse(readFileSync(require('node:path').join(__dirname, '../package.json'), 'utf8')).version}\n`);
  process.exit(0);
}

const notBuilt = (error) => error && error.code === 'ERR_MODULE_NOT_FOUND' && /dist\/src\/cli\/(main|fast-path)\.js/.test(String(error.message));

/** Code caches kept in <cache>/startup (one per bundle build and node version). */
const KEEP_CODE_CACHES = 8;

/**
 * The fast path from its bundle (dist/src/cli/fast-path.bundle.js, scripts/bundle-fast-path.js):
 * the same modules in one script, compiled with a V8 code cache kept in the cache folder, which
 * saves most of loading them one by one (bench/results/startup.md). Taken only while every input
 * of the bundle has the size it was built from and is no newer than the bundle; otherwise (a bare
 * `tsc -p .` or an edit since, or no bundle) undefined, and the modules are imported as they are.
 */
function bundledFastPath() {
  const { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } = require('node:fs');
  const { dirname, join } = require('node:path');
  const root = join(__dirname, '..');
  const file = join(root, 'dist/src/cli/fast-path.bundle.js');
  let text;
  let header;
  try {
    text = readFileSync(file, 'utf8');
    header = JSON.parse(text.slice(2, text.indexOf('\n')));
  } catch {
    return undefined;
  }
  // Current: every input has its size and is not newer than the bundle. (Not an exact mtime:
  // npm's tarballs give every file one fixed mtime, bundle and inputs alike.)
  const built = statSync(file).mtimeMs;
  for (const [path, size] of header.inputs) {
    const s = statSync(join(root, path), { throwIfNoEntry: false });
    if (!s || s.size !== size || s.mtimeMs > built) return undefined;
  }
  // As src/python/paths.ts's cacheDir(). Named by the bundle's sha256 and node's version: V8
  // refuses data from another V8 or other flags (then it is written again), not a changed source.
  const env = process.env;
  const cache = env.SPHANA_CACHE_DIR || (env.XDG_CACHE_HOME ? join(env.XDG_CACHE_HOME, 'sphana') : join(require('node:os').homedir(), '.cache', 'sphana'));
  const cacheFile = join(cache, 'startup', `fast-path-${header.hash}-${process.version}-${process.arch}.v8`);
  let cachedData;
  try {
    cachedData = readFileSync(cacheFile);
  } catch {
    cachedData = undefined;
  }
  const script = new (require('node:vm').Script)(text, { filename: file, cachedData });
  const fast = script.runInThisContext()(require, (specifier) => import(specifier), dirname(file));
  const fresh = cachedData === undefined || script.cachedDataRejected;
  // Written after the command ran, so the functions it compiled are in it; atomically (a rename).
  const saveCache = () => {
    if (!fresh) return;
    try {
      mkdirSync(dirname(cacheFile), { recursive: true });
      const tmp = `${cacheFile}.${process.pid}.tmp`;
      writeFileSync(tmp, script.createCachedData());
      renameSync(tmp, cacheFile);
      // Each build names a new file: keep the newest few (checkouts may share the cache folder).
      const folder = dirname(cacheFile);
      const old = readdirSync(folder).filter((name) => /^fast-path-.*\.v8(\.\d+\.tmp)?$/.test(name))
        .map((name) => ({ name, mtime: statSync(join(folder, name)).mtimeMs })).sort((a, b) => b.mtime - a.mtime).slice(KEEP_CODE_CACHES);
      for (const { name } of old) rmSync(join(folder, name), { force: true });
    } catch {
      // A read-only or missing cache folder only costs the next start its compile.
    }
  };
  return { fast, saveCache };
}

async function fastPath() {
  if (!args.includes('inspect')) return undefined;
  // --verbose prints stacks: they name the modules in dist/ only when those are what runs.
  const bundled = args.includes('--verbose') ? undefined : bundledFastPath();
  let fast = bundled?.fast;
  if (!fast) {
    try {
      fast = await import('../dist/src/cli/fast-path.js');
    } catch (error) {
      if (notBuilt(error)) return undefined; // the full CLI's import says so
      throw error;
    }
  }
  const parsed = fast.parseFast(args);
  if (!parsed) return undefined;
  const code = await fast.runFast(parsed);
  bundled?.saveCache();
  return code;
}

async function start() {
  const fastExit = await fastPath();
  if (fastExit !== undefined) {
    process.exitCode = fastExit;
    return;
  }
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

start();
