import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { type Server, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { isSphanaError } from '../../src/errors.js';
import { startProcess } from '../../src/python/run-process.js';
import { hubCacheDir } from '../../src/weights/hf-cache.js';
import { resolveWeights } from '../../src/weights/resolve.js';

/**
 * A stand-in for the hub's HTTP API on loopback: model info (with sizes, LFS sha256 and git
 * blob ids, as `?blobs=true` gives them), file downloads, a gated model, and hostile
 * variants: a bad commit sha, a wrong sha256, a stall, a redirect to another origin.
 */
let server: Server;
let other: Server;
let endpoint: string;
let otherOrigin: string;
let root: string;
const requests: string[] = [];
const otherRequests: string[] = [];
const SHA = '0123456789abcdef0123456789abcdef01234567';
const files: Record<string, string> = {
  'config.json': JSON.stringify({ architectures: ['LlamaForCausalLM'], model_type: 'llama' }),
  'model.safetensors': 'x'.repeat(4096),
  'tokenizer.json': '{}',
  'README.md': 'not downloaded',
};
const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');
const blobId = (s: string) => createHash('sha1').update(`blob ${Buffer.byteLength(s)}\0`).update(s).digest('hex');
const sibling = (name: string, lie = false) => name.endsWith('.safetensors')
  ? { rfilename: name, size: files[name].length, lfs: { sha256: lie ? sha256('something else') : sha256(files[name]), size: files[name].length } }
  : { rfilename: name, size: files[name].length, blobId: blobId(files[name]) };

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'sphana-hub-'));
  other = createServer((req, res) => {
    otherRequests.push(`${req.headers.authorization ?? '-'} ${req.url}`);
    res.writeHead(200);
    res.end(files['model.safetensors']);
  });
  await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve));
  otherOrigin = `http://127.0.0.1:${(other.address() as AddressInfo).port}`;
  server = createServer((req, res) => {
    requests.push(`${req.headers.authorization ?? '-'} ${req.url}`);
    const url = req.url!;
    const gated = url.includes('gated/') && req.headers.authorization !== 'Bearer secret';
    if (gated) { res.writeHead(401); res.end(); return; }
    if (url.includes('/stall-headers/')) return; // never answers
    if (url.startsWith('/api/models/err/')) { res.writeHead(500); res.end(); return; }
    const info = /^\/api\/models\/([^/]+)\/([^/]+)\/revision\/([^?]+)\?blobs=true$/.exec(url);
    if (info) {
      const repo = info[2];
      const sha = repo === 'bad-sha' ? '../../x' : SHA;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ sha, siblings: Object.keys(files).map((f) => sibling(f, repo === 'wrong-sha256')) }));
      return;
    }
    const file = /^\/[^/]+\/([^/]+)\/resolve\/([0-9a-f]{40})\/(.+)$/.exec(url);
    if (file && files[file[3]] !== undefined) {
      if (file[1] === 'stall-body' && file[3] === 'model.safetensors') {
        res.writeHead(200, { 'content-length': String(files[file[3]].length) });
        res.write(files[file[3]].slice(0, 100)); // then nothing
        return;
      }
      if (file[1] === 'redirect' && file[3] === 'model.safetensors') {
        res.writeHead(302, { location: `${otherOrigin}/blob/model.safetensors` });
        res.end();
        return;
      }
      res.writeHead(200);
      res.end(files[file[3]]);
      return;
    }
    res.writeHead(404);
    res.end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => { server.closeAllConnections(); server.close(); other.close(); rmSync(root, { recursive: true, force: true }); });

/** Every file below `dir`, relative. */
function tree(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => !e.isDirectory()).map((e) => join(e.parentPath, e.name).slice(dir.length + 1)).sort();
}

test('downloads into the hub cache layout, each file checked against the API, then finds it there without the network', async () => {
  const env = { HF_HUB_CACHE: join(root, 'cache'), HF_ENDPOINT: endpoint };
  const got = await resolveWeights('org/tiny', { env });
  assert.equal(got.from, 'hub-download');
  assert.equal(got.revision, SHA);
  assert.equal(got.dir, join(root, 'cache', 'models--org--tiny', 'snapshots', SHA));
  assert.equal(readFileSync(join(got.dir, 'model.safetensors'), 'utf8').length, 4096);
  assert.equal(existsSync(join(got.dir, 'README.md')), false);
  assert.equal(readFileSync(join(root, 'cache', 'models--org--tiny', 'refs', 'main'), 'utf8'), SHA);
  assert.deepEqual(tree(join(root, 'cache')), ['models--org--tiny/refs/main', ...['config.json', 'model.safetensors', 'tokenizer.json'].map((f) => `models--org--tiny/snapshots/${SHA}/${f}`)]);
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
  assert.ok(requests.some((r) => r.startsWith(`Bearer secret /gated/model/resolve/${SHA}/config.json`)));
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

test('a hub commit sha of ../../x is refused and nothing is written, inside the cache or outside it', async () => {
  const base = join(root, 'badsha');
  mkdirSync(base);
  await assert.rejects(resolveWeights('org/bad-sha', { env: { HF_HUB_CACHE: join(base, 'cache'), HF_ENDPOINT: endpoint } }), (e: unknown) => {
    assert.ok(isSphanaError(e));
    assert.equal(e.code, 'E_HUB_BAD_RESPONSE');
    assert.equal(e.exitCode, 3);
    assert.match(e.message, /commit sha "\.\.\/\.\.\/x" is not 40 hex characters/);
    return true;
  });
  assert.deepEqual(tree(base), []);
  assert.equal(requests.some((r) => r.includes('/bad-sha/resolve/')), false);
});

test('a file whose bytes do not match the API\'s sha256 is refused: no file kept, no .sphana-part left', async () => {
  const cache = join(root, 'wrongsha');
  await assert.rejects(resolveWeights('org/wrong-sha256', { env: { HF_HUB_CACHE: cache, HF_ENDPOINT: endpoint } }), (e: unknown) => {
    assert.ok(isSphanaError(e));
    assert.equal(e.code, 'E_HUB_BAD_RESPONSE');
    assert.match(e.message, /model\.safetensors: sha256 [0-9a-f]{12}… differs from the API's [0-9a-f]{12}…/);
    return true;
  });
  const left = tree(cache);
  assert.equal(left.some((f) => f.endsWith('model.safetensors') || f.includes('sphana-part') || f.includes('refs/')), false, left.join(', '));
});

test('a stalled hub ends with E_HUB_TIMEOUT: before the headers and in the middle of a body', async () => {
  const timeouts = { connectMs: 300, readMs: 300 };
  for (const [repo, pattern] of [['stall-headers', /no response to model info within 0\.3 s/], ['stall-body', /model\.safetensors stalled \(no data for 0\.3 s\)/]] as const) {
    const cache = join(root, `stall-${repo}`);
    await assert.rejects(resolveWeights(`org/${repo}`, { env: { HF_HUB_CACHE: cache, HF_ENDPOINT: endpoint }, timeouts }), (e: unknown) => {
      assert.ok(isSphanaError(e));
      assert.equal(e.code, 'E_HUB_TIMEOUT');
      assert.equal(e.exitCode, 4);
      assert.match(e.message, pattern);
      return true;
    });
    assert.equal(tree(cache).some((f) => f.includes('sphana-part') || f.endsWith('model.safetensors')), false);
  }
});

test('credentials in HF_ENDPOINT are sent as a header and never echoed; the token is not sent to another origin', async () => {
  const port = (server.address() as AddressInfo).port;
  for (const hub of [`http://alice:hunter2@127.0.0.1:${port}`, 'http://alice:hunter2@127.0.0.1:9']) {
    await assert.rejects(resolveWeights('err/model', { env: { HF_HUB_CACHE: join(root, 'creds'), HF_ENDPOINT: hub } }), (e: unknown) => {
      assert.ok(isSphanaError(e));
      const text = JSON.stringify({ message: e.message, hint: e.hint, details: e.details });
      assert.equal(text.includes('hunter2'), false, text);
      assert.equal(text.includes('alice:'), false, text);
      assert.match(e.message, /127\.0\.0\.1/);
      return true;
    });
  }
  assert.ok(requests.includes(`Basic ${Buffer.from('alice:hunter2').toString('base64')} /api/models/err/model/revision/main?blobs=true`));
  const got = await resolveWeights('org/redirect', { env: { HF_HUB_CACHE: join(root, 'redirect'), HF_ENDPOINT: endpoint, HF_TOKEN: 'tok-123' } });
  assert.equal(readFileSync(join(got.dir, 'model.safetensors'), 'utf8'), files['model.safetensors']);
  assert.deepEqual(otherRequests, ['- /blob/model.safetensors']);
  assert.ok(requests.some((r) => r.startsWith('Bearer tok-123 /org/redirect/resolve/')));
});

test('HF_TOKEN and HF_ENDPOINT never reach a child process (pip, the probes, the bridge)', async () => {
  const seen: string[] = [];
  const run = startProcess(process.execPath, ['-e', 'console.log([process.env.HF_TOKEN, process.env.HUGGING_FACE_HUB_TOKEN, process.env.HF_ENDPOINT, process.env.KEEP].map(String).join(","))'], {
    env: { ...process.env, HF_TOKEN: 'tok', HUGGING_FACE_HUB_TOKEN: 'tok2', HF_ENDPOINT: 'http://u:p@x', KEEP: 'kept' },
    onStdoutLine: (l) => seen.push(l),
  });
  assert.equal((await run.done).exitCode, 0);
  assert.deepEqual(seen, ['undefined,undefined,undefined,kept']);
});

test('--revision and safetensors shard names are validated before anything is read or fetched', async () => {
  const before = requests.length;
  for (const revision of ['../../x', '/etc', 'a\0b', 'main;rm']) {
    await assert.rejects(resolveWeights('org/tiny', { revision, env: { HF_HUB_CACHE: join(root, 'rev'), HF_ENDPOINT: endpoint } }), (e: unknown) => {
      assert.ok(isSphanaError(e));
      assert.equal(e.code, 'E_USAGE');
      assert.equal(e.exitCode, 2);
      return true;
    });
  }
  assert.equal(requests.length, before);
  assert.equal(existsSync(join(root, 'rev')), false);
  const dir = join(root, 'escaping-index');
  mkdirSync(dir);
  writeFileSync(join(dir, 'config.json'), files['config.json']);
  writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { 'a.weight': '../outside.safetensors' } }));
  await assert.rejects(resolveWeights('org/tiny', { weightsDir: dir }), (e: unknown) => {
    assert.ok(isSphanaError(e));
    assert.equal(e.code, 'E_UNSAFE_PATH');
    assert.match(e.message, /safetensors shard name "\.\.\/outside\.safetensors" is unsafe: contains a '\.\.' segment/);
    return true;
  });
});
