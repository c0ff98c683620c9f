import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { type Server, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { isSphanaError } from '../../src/errors.js';
import { hubCacheDir } from '../../src/weights/hf-cache.js';
import { resolveWeights } from '../../src/weights/resolve.js';

/** A stand-in for the hub's HTTP API on loopback: model info, file downloads, a gated model. */
let server: Server;
let endpoint: string;
let root: string;
const requests: string[] = [];
const files: Record<string, string> = {
  'config.json': JSON.stringify({ architectures: ['LlamaForCausalLM'], model_type: 'llama' }),
  'model.safetensors': 'x'.repeat(4096),
  'tokenizer.json': '{}',
  'README.md': 'not downloaded',
};

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'sphana-hub-'));
  server = createServer((req, res) => {
    requests.push(`${req.headers.authorization ?? '-'} ${req.url}`);
    const gated = req.url!.includes('gated/') && req.headers.authorization !== 'Bearer secret';
    if (gated) { res.writeHead(401); res.end(); return; }
    const info = /^\/api\/models\/([^/]+\/[^/]+)\/revision\/(\w+)$/.exec(req.url!);
    if (info) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ sha: 'abc123', siblings: Object.keys(files).map((rfilename) => ({ rfilename })) }));
      return;
    }
    const file = /^\/[^/]+\/[^/]+\/resolve\/abc123\/(.+)$/.exec(req.url!);
    if (file && files[file[1]] !== undefined) { res.writeHead(200); res.end(files[file[1]]); return; }
    res.writeHead(404);
    res.end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => { server.close(); rmSync(root, { recursive: true, force: true }); });

test('downloads into the hub cache layout, then finds it there without the network', async () => {
  const env = { HF_HUB_CACHE: join(root, 'cache'), HF_ENDPOINT: endpoint };
  const got = await resolveWeights('org/tiny', { env });
  assert.equal(got.from, 'hub-download');
  assert.equal(got.revision, 'abc123');
  assert.equal(got.dir, join(root, 'cache', 'models--org--tiny', 'snapshots', 'abc123'));
  assert.equal(readFileSync(join(got.dir, 'model.safetensors'), 'utf8').length, 4096);
  assert.equal(existsSync(join(got.dir, 'README.md')), false);
  assert.equal(readFileSync(join(root, 'cache', 'models--org--tiny', 'refs', 'main'), 'utf8'), 'abc123');
  const before = requests.length;
  const again = await resolveWeights('org/tiny', { env, download: false });
  assert.equal(again.from, 'hf-cache');
  assert.equal(requests.length, before);
});

test('a gated model needs HF_TOKEN; with it the download goes through', async () => {
  const env = { HF_HUB_CACHE: join(root, 'cache2'), HF_ENDPOINT: endpoint };
  await assert.rejects(resolveWeights('gated/model', { env }), (e: unknown) => {
    assert.ok(isSphanaError(e));
    assert.equal(e.code, 'E_NO_WEIGHTS');
    assert.match(e.message, /hub download: gated\/model needs authorisation \(HTTP 401\)/);
    return true;
  });
  const got = await resolveWeights('gated/model', { env: { ...env, HF_TOKEN: 'secret' } });
  assert.equal(got.from, 'hub-download');
  assert.ok(requests.some((r) => r.startsWith('Bearer secret /gated/model/resolve/abc123/config.json')));
});

test('--weights DIR wins; HF_HOME and the default cache location are honoured', async () => {
  const dir = join(root, 'mine');
  mkdirSync(dir, { recursive: true });
  for (const [name, body] of Object.entries(files)) writeFileSync(join(dir, name), body);
  const got = await resolveWeights('org/tiny', { weightsDir: dir, env: { HF_ENDPOINT: 'http://127.0.0.1:9' } });
  assert.deepEqual([got.from, got.dir], ['weights-dir', dir]);
  assert.equal(hubCacheDir({ HF_HOME: '/x/hf' }), '/x/hf/hub');
  assert.equal(hubCacheDir({ HF_HUB_CACHE: '/y', HF_HOME: '/x' }), '/y');
  assert.equal(hubCacheDir({ XDG_CACHE_HOME: '/z' }), '/z/huggingface/hub');
});

test('an unreachable hub is one of the attempts listed', async () => {
  await assert.rejects(resolveWeights('org/other', { env: { HF_HUB_CACHE: join(root, 'c3'), HF_ENDPOINT: 'http://127.0.0.1:9' } }), (e: unknown) => {
    assert.ok(isSphanaError(e) && e.code === 'E_NO_WEIGHTS');
    assert.match(e.message, /hf cache .*: no snapshot of org\/other@main; hub download: cannot reach http:\/\/127\.0\.0\.1:9/);
    return true;
  });
});
