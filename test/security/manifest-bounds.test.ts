import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Manifest } from '../../src/manifest/schema.js';
import { sphana } from '../helpers/cli.js';
import { type Models, buildModels, makeArtifact } from '../verify/fixture.js';

/** Issue 10 item 9: manifest numbers are bounded when read; runtime checks trust only a manifest the structure check confirmed. */
let models: Models;
let root: string;
let good: string;
const read = (dir: string) => JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as Manifest;
let n = 0;
function variant(edit: (m: Manifest) => void): string {
  const dir = join(root, `v${++n}`);
  cpSync(good, dir, { recursive: true });
  const m = read(dir);
  edit(m);
  writeFileSync(join(dir, 'manifest.json'), JSON.stringify(m));
  return dir;
}

before(async () => {
  models = buildModels();
  root = mkdtempSync(join(tmpdir(), 'sphana-bounds-'));
  good = join(root, 'good');
  await makeArtifact(models, good, { int8: 'int8' });
});
after(() => {
  rmSync(root, { recursive: true, force: true });
  rmSync(models.root, { recursive: true, force: true });
});

test('a manifest claiming 50,000,000 layers (or other unbounded numbers) is refused when read: exit 3, E_BAD_MANIFEST', () => {
  const cases: Array<[(m: Manifest) => void, RegExp]> = [
    [(m) => { m.kvCache.layers = 50_000_000; }, /has kvCache\.layers 50000000; expected an integer from 1 to 1024/],
    [(m) => { m.kvCache.headDim = 1.5; }, /has kvCache\.headDim 1\.5; expected an integer/],
    [(m) => { m.architecture.vocabSize = 1e12; }, /has architecture\.vocabSize 1000000000000; expected an integer from 1 to 16777216/],
    [(m) => { m.tokenizer.eosTokenIds = Array.from({ length: 5000 }, () => 1); }, /lists 5000 EOS token ids; at most 1024 are accepted/],
    [(m) => { m.files[0].bytes = -1; }, /records -1 bytes for /],
    [(m) => { m.files[0].sha256 = 'zz'; }, /records an invalid sha256 for /],
  ];
  for (const [edit, pattern] of cases) {
    for (const command of ['verify', 'deploy']) {
      const dir = variant(edit);
      const r = sphana(command === 'verify' ? ['verify', dir] : ['deploy', dir, '--to', join(dir, '..', `to-${n}`), '--allow-unverified']);
      assert.equal(r.exitCode, 3, r.stderr);
      assert.match(r.stderr, /^error E_BAD_MANIFEST: manifest\.json /m);
      assert.match(r.stderr, pattern);
      assert.doesNotMatch(r.stderr, /runtime|heap/);
    }
  }
});

test('a manifest larger than 16 MiB is refused before it is read', () => {
  const dir = variant(() => {});
  writeFileSync(join(dir, 'manifest.json'), `${readFileSync(join(dir, 'manifest.json'), 'utf8')}${' '.repeat(17 << 20)}`);
  const r = sphana(['verify', dir]);
  assert.equal(r.exitCode, 3, r.stderr);
  assert.match(r.stderr, /E_BAD_MANIFEST: .*manifest\.json is \d+ bytes; a manifest is at most 16777216/);
});

test('a manifest whose sizes fail the structure check gets no runtime checks: they are skipped, naming why', () => {
  const dir = variant((m) => { m.kvCache.layers = 3; m.kvCache.numKvHeads = 1000; });
  const r = sphana(['verify', '--json', '--tokens', '2', dir]);
  assert.equal(r.exitCode, 1, r.stderr);
  const report = JSON.parse(r.stdout) as { checks: Array<{ name: string; status: string; message: string }> };
  const status = Object.fromEntries(report.checks.map((c) => [c.name, c.status]));
  assert.deepEqual(status, { files: 'passed', structure: 'failed', tokenizer: 'passed', runtime: 'skipped', agreement: 'skipped', sample: 'skipped', speed: 'skipped' });
  const runtime = report.checks.find((c) => c.name === 'runtime')!;
  assert.match(runtime.message, /^skipped: the structure check failed, so the manifest's sizes are not trusted \(the manifest says layers 3, config\.json says 2/);
});
