import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { type Server, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { type DownloadProgress, downloadText } from '../../src/progress.js';
import { downloadFromHub } from '../../src/weights/hub-download.js';

/** The download reports bytes as they arrive: a loopback hub serving a 3 MB file in slow chunks. */
let server: Server;
let endpoint: string;
let root: string;
const WEIGHTS = 3 * 1024 * 1024;
const CHUNK = Buffer.alloc(256 * 1024, 7);
const CONFIG = '{"model_type":"llama"}';
const weightsSha = createHash('sha256').update(Buffer.alloc(WEIGHTS, 7)).digest('hex');
const configBlob = createHash('sha1').update(`blob ${Buffer.byteLength(CONFIG)}\0${CONFIG}`).digest('hex');

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'sphana-dl-progress-'));
  server = createServer((req, res) => {
    if (req.url!.startsWith('/api/models/')) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ sha: 'c0ffee'.padEnd(40, '0'), siblings: [
        { rfilename: 'config.json', size: Buffer.byteLength(CONFIG), blobId: configBlob },
        { rfilename: 'model.safetensors', size: WEIGHTS, lfs: { sha256: weightsSha, size: WEIGHTS } },
      ] }));
      return;
    }
    if (req.url!.endsWith('/config.json')) { res.end(CONFIG); return; }
    if (req.url!.endsWith('/model.safetensors')) {
      res.writeHead(200, { 'content-length': String(WEIGHTS) });
      let sent = 0;
      const timer = setInterval(() => {
        res.write(CHUNK);
        sent += CHUNK.length;
        if (sent >= WEIGHTS) { clearInterval(timer); res.end(); }
      }, 60);
      return;
    }
    res.writeHead(404);
    res.end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => { server.close(); rmSync(root, { recursive: true, force: true }); });

test('downloadFromHub reports bytes so far against content-length, ending at the file size', async () => {
  const seen: DownloadProgress[] = [];
  const messages: string[] = [];
  const got = await downloadFromHub(join(root, 'cache'), 'org/m', 'main', { endpoint, onBytes: (p) => seen.push(p), onProgress: (m) => messages.push(m) });
  const weights = seen.filter((p) => p.file === 'model.safetensors');
  assert.ok(weights.length >= 3, `${weights.length} reports over 12 chunks sent 60 ms apart`);
  assert.ok(weights.every((p) => p.totalBytes === WEIGHTS && p.index === 2 && p.files === 2));
  for (let i = 1; i < weights.length; i++) assert.ok(weights[i].bytes >= weights[i - 1].bytes);
  assert.ok(weights.some((p) => p.bytes > 0 && p.bytes < WEIGHTS), 'a figure in the middle');
  assert.equal(weights.at(-1)!.bytes, WEIGHTS);
  assert.equal(statSync(join(got.dir, 'model.safetensors')).size, WEIGHTS);
  assert.ok(messages.includes('downloading model.safetensors (2/2): 3.1 MB / 3.1 MB (100 %)'), messages.join('\n'));
  assert.equal(downloadText({ file: 'a', index: 1, files: 1, bytes: 5e8, totalBytes: null }), 'a (1/1): 500.0 MB');
});
