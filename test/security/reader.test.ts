import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { isSphanaError } from '../../src/errors.js';
import { readModelBytes } from '../../src/onnx/model.js';
import { countLimit } from '../../src/onnx/decoder.js';
import { sphana } from '../helpers/cli.js';
import { fixture } from '../helpers/paths.js';

/** Issue 10, item 1: the reader means what protobuf means, so no tensor hides from the checks. */
for (const [dir, location] of [['pb_first_graph', '../outside.bin'], ['pb_concat', '/etc/passwd'], ['pb_enum', '../outside.bin']] as const) {
  test(`inspect sees the unsafe location hidden in hostile/${dir} and exits 3`, () => {
    const r = sphana(['inspect', '--json', fixture('hostile', dir, 'model.onnx')]);
    assert.equal(r.exitCode, 3, r.stderr);
    const summary = JSON.parse(r.stdout) as { externalDataFiles: Array<{ location: string; status: string; fileBytes: number | null }>; problems: Array<{ code: string }> };
    assert.deepEqual(summary.externalDataFiles.map((f) => [f.location, f.status, f.fileBytes]), [[location, 'unsafe', null]]);
    assert.deepEqual(summary.problems.map((p) => p.code), ['E_UNSAFE_EXTERNAL_DATA']);
    assert.match(r.stderr, /E_UNSAFE_EXTERNAL_DATA/);
  });
}

test('sphana quantize refuses the file whose unsafe tensor hides in the first graph copy: exit 3, nothing written', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sphana-pb-'));
  try {
    cpSync(fixture('hostile/pb_first_graph'), join(dir, 'model'), { recursive: true });
    cpSync(fixture('hostile/outside.bin'), join(dir, 'outside.bin'));
    const before = readdirSync(join(dir, 'model')).sort();
    const r = sphana(['quantize', join(dir, 'model/model.onnx')]);
    assert.equal(r.exitCode, 3, r.stderr);
    assert.match(r.stderr, /^error E_UNSAFE_EXTERNAL_DATA: .*external data location '\.\.\/outside\.bin' is unsafe: contains a '\.\.' segment/m);
    assert.deepEqual(readdirSync(join(dir, 'model')).sort(), before);
    assert.deepEqual(readdirSync(dir).sort(), ['model', 'outside.bin']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** Issue 10, item 9 (reader part): structure counts are capped relative to the file's size. */
function emptyNodesModel(nodes: number): Buffer {
  const graph = Buffer.alloc(nodes * 2);
  for (let i = 0; i < nodes; i++) graph[i * 2] = 0x0a; // NodeProto field 1, length 0
  const varint = (n: number) => { const out: number[] = []; while (n > 127) { out.push((n & 127) | 128); n = Math.floor(n / 128); } out.push(n); return Buffer.from(out); };
  return Buffer.concat([Buffer.from([0x08, 0x0a, 0x3a]), varint(graph.length), graph]);
}

test('a file of empty nodes beyond the cap is refused with E_LIMIT_EXCEEDED', () => {
  const nodes = 200_000;
  const bytes = emptyNodesModel(nodes);
  const limit = countLimit('onnx.NodeProto', bytes.length);
  assert.equal(limit, 4096 + Math.floor(bytes.length / 16));
  assert.ok(nodes > limit);
  assert.throws(() => readModelBytes(bytes, 'empty-nodes'), (e: unknown) => {
    assert.ok(isSphanaError(e));
    assert.equal(e.code, 'E_LIMIT_EXCEEDED');
    assert.equal(e.exitCode, 3);
    assert.match(e.message, new RegExp(`more than ${limit} NodeProto messages in a file of ${bytes.length} bytes`));
    return true;
  });
  // Just under the cap: decodes.
  const ok = emptyNodesModel(4096);
  assert.equal(readModelBytes(ok, 'few-empty-nodes').proto.graph?.node?.length, 4096);
});
