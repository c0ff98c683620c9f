import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { appendFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { sphana } from '../helpers/cli.js';
import { ROOT, fixture } from '../helpers/paths.js';

/**
 * bin/sphana.js runs `sphana inspect` from one bundled script (scripts/bundle-fast-path.js) with a
 * V8 code cache in <cache>/startup. The bundle must never run code the modules in dist/ do not
 * hold: it is taken only while every input has the size it was built from and is no newer than
 * the bundle. These tests
 * work on a copy of the package (dist/src, bin, the .proto and tables, the bundler), so they can
 * edit it; test/cli/fast-path.test.ts compares the bundle's output with the full CLI's for every
 * fixture.
 */
const dir = mkdtempSync(join(tmpdir(), 'sphana-bundle-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const pkg = join(dir, 'pkg');
for (const part of ['dist/src', 'bin', 'scripts/bundle-fast-path.js', 'src/onnx/onnx.proto', 'src/onnx/onnx-schema.json', 'package.json']) {
  cpSync(join(ROOT, part), join(pkg, part), { recursive: true });
}
symlinkSync(join(ROOT, 'node_modules'), join(pkg, 'node_modules'));
const build = spawnSync(process.execPath, [join(pkg, 'scripts/bundle-fast-path.js')], { encoding: 'utf8' });
assert.equal(build.status, 0, build.stderr);

const models = [fixture('valid/mlp.onnx'), fixture('valid/kv_optimum.onnx'), fixture('hostile/ext_missing/model.onnx'), fixture('hostile/tensor_proto.onnx')];
const expected = sphana(['inspect', '--json', ...models]);

let caches = 0;
/** `sphana inspect --json` of the copy, with its own cache folder (or `cache`). */
function inspectCopy(cache = join(dir, `cache-${caches++}`)): { exitCode: number; stdout: string; stderr: string; cache: string } {
  const r = spawnSync(process.execPath, [join(pkg, 'bin/sphana.js'), 'inspect', '--json', ...models], {
    cwd: ROOT, encoding: 'utf8', env: { ...process.env, SPHANA_CACHE_DIR: cache },
  });
  return { exitCode: r.status ?? -1, stdout: r.stdout, stderr: r.stderr, cache };
}

const cacheFiles = (cache: string) => (existsSync(join(cache, 'startup')) ? readdirSync(join(cache, 'startup')) : []);

test('a current bundle runs, prints what the modules print, and leaves one code cache named by its hash and node', () => {
  const r = inspectCopy();
  assert.deepEqual([r.stdout, r.stderr, r.exitCode], [expected.stdout, expected.stderr, expected.exitCode]);
  assert.equal(expected.exitCode, 3, 'the missing external data is reported');
  const hash = JSON.parse(readFileSync(join(pkg, 'dist/src/cli/fast-path.bundle.js'), 'utf8').split('\n')[0].slice(2)).hash;
  assert.match(hash, /^[0-9a-f]{16}$/);
  assert.deepEqual(cacheFiles(r.cache), [`fast-path-${hash}-${process.version}-${process.arch}.v8`]);
  const data = readFileSync(join(r.cache, 'startup', cacheFiles(r.cache)[0]));
  assert.ok(data.length > 10_000, `${data.length} bytes of code cache`);
  // The second run reads it (V8 accepts it: it is not written again) and prints the same.
  const again = inspectCopy(r.cache);
  assert.equal(again.stdout, expected.stdout);
  assert.ok(readFileSync(join(r.cache, 'startup', cacheFiles(r.cache)[0])).equals(data));
});

test('a damaged code cache is refused by V8 and written again; the output does not change', () => {
  const cache = join(dir, 'damaged');
  const first = inspectCopy(cache);
  const name = cacheFiles(cache)[0];
  const good = readFileSync(join(cache, 'startup', name));
  for (const bad of [Buffer.from('not a code cache'), good.subarray(0, good.length >> 1), Buffer.alloc(0)]) {
    writeFileSync(join(cache, 'startup', name), bad);
    const r = inspectCopy(cache);
    assert.deepEqual([r.stdout, r.stderr, r.exitCode], [first.stdout, first.stderr, first.exitCode]);
    assert.equal(readFileSync(join(cache, 'startup', name)).length, good.length, 'written again in full');
  }
  // Older builds' caches beyond the newest 8 are removed when one is written; others' files stay.
  const folder = join(cache, 'startup');
  for (let i = 0; i < 12; i++) writeFileSync(join(folder, `fast-path-${i.toString(16).padStart(16, '0')}-v0-x.v8`), 'old');
  writeFileSync(join(folder, 'unrelated.txt'), 'kept');
  rmSync(join(folder, name));
  inspectCopy(cache);
  const left = readdirSync(folder).sort();
  assert.equal(left.length, 9, left.join(', '));
  assert.ok(left.includes(name) && left.includes('unrelated.txt'));
  // A cache folder that cannot be written costs only the compile.
  const blocked = join(dir, 'blocked');
  writeFileSync(blocked, 'a file where the cache folder would be');
  const r = inspectCopy(blocked);
  assert.deepEqual([r.stdout, r.stderr, r.exitCode], [first.stdout, first.stderr, first.exitCode]);
});

test('an edited module makes the bundle stale: the modules are imported and the edit shows', () => {
  const summary = join(pkg, 'dist/src/onnx/summary.js');
  const text = readFileSync(summary, 'utf8');
  assert.ok(text.includes("graphName: graph.name ?? ''"));
  writeFileSync(summary, text.replace("graphName: graph.name ?? ''", "graphName: 'edited after the bundle'"));
  const r = inspectCopy();
  assert.equal(r.exitCode, expected.exitCode, r.stderr);
  assert.equal(r.stdout, expected.stdout.replace(/"graphName":"[^"]*"/g, '"graphName":"edited after the bundle"'));
  assert.deepEqual(cacheFiles(r.cache), [], 'no code cache: the bundle did not run');
  // Rebuilt, the bundle holds the edit and runs again.
  writeFileSync(summary, text);
  const rebuilt = spawnSync(process.execPath, [join(pkg, 'scripts/bundle-fast-path.js')], { encoding: 'utf8' });
  assert.equal(rebuilt.status, 0, rebuilt.stderr);
  const back = inspectCopy();
  assert.equal(back.stdout, expected.stdout);
  assert.equal(cacheFiles(back.cache).length, 1);
});

test('the same bytes written again (a bare tsc -p .) or an edited .proto also make it stale', () => {
  const errors = join(pkg, 'dist/src/errors.js');
  const text = readFileSync(errors);
  rmSync(errors);
  writeFileSync(errors, text); // same size, new mtime
  const r = inspectCopy();
  assert.equal(r.stdout, expected.stdout);
  assert.deepEqual(cacheFiles(r.cache), []);
  spawnSync(process.execPath, [join(pkg, 'scripts/bundle-fast-path.js')]);
  assert.equal(cacheFiles(inspectCopy().cache).length, 1, 'current again');
  // The bundle embeds the schema tables; with the .proto edited the modules compile them again.
  appendFileSync(join(pkg, 'src/onnx/onnx.proto'), '\n// edited\n');
  const edited = inspectCopy();
  assert.equal(edited.stdout, expected.stdout);
  assert.deepEqual(cacheFiles(edited.cache), []);
});

test('an installed package (npm gives every file of its tarball one mtime) takes the bundle', () => {
  spawnSync(process.execPath, [join(pkg, 'scripts/bundle-fast-path.js')]);
  const npmDate = new Date('1985-10-26T08:15:00Z');
  const all = (d: string): string[] => readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? all(join(d, e.name)) : [join(d, e.name)]));
  for (const file of [...all(join(pkg, 'dist/src')), ...all(join(pkg, 'src'))]) utimesSync(file, npmDate, npmDate);
  const r = inspectCopy();
  assert.equal(r.stdout, expected.stdout);
  assert.equal(cacheFiles(r.cache).length, 1, 'the bundle ran');
  // An input of the same size but newer than the bundle (written after it) is an edit.
  utimesSync(join(pkg, 'dist/src/onnx/decoder.js'), new Date(), new Date());
  assert.deepEqual(cacheFiles(inspectCopy().cache), []);
});

test('the bundler refuses what it cannot bundle faithfully, naming the file and line', () => {
  const copy = join(dir, 'refuse');
  for (const part of ['dist/src', 'scripts/bundle-fast-path.js', 'src/onnx/onnx.proto', 'src/onnx/onnx-schema.json']) {
    cpSync(join(ROOT, part), join(copy, part), { recursive: true });
  }
  mkdirSync(join(copy, 'bin'), { recursive: true });
  const guards = join(copy, 'dist/src/cli/guards.js');
  const original = readFileSync(guards, 'utf8');
  for (const [edit, message] of [
    ["import ora from 'ora';\n", /guards\.js:1: unsupported import: import ora from 'ora'/],
    ["import { Command } from 'commander';\n", /guards\.js:1: the fast path imports the package 'commander' statically/],
    ["export * from './output.js';\n", /guards\.js:\d+: unsupported statement: export \* from/],
    ["const later = () => import('./output.js');\n", /guards\.js:\d+: a relative import\(\)/],
  ] as const) {
    writeFileSync(guards, edit + original);
    const r = spawnSync(process.execPath, [join(copy, 'scripts/bundle-fast-path.js')], { encoding: 'utf8' });
    assert.notEqual(r.status, 0, edit);
    assert.match(r.stderr, message, edit);
  }
});
