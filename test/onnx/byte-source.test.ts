import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { FileByteSource } from '../../src/onnx/byte-source.js';

/**
 * FileByteSource reads a model through one window: small after a jump (the reader skipping a
 * tensor payload), doubling while reads continue where it ended. Every view must still hold the
 * file's exact bytes, whatever the order of the reads.
 */
const dir = mkdtempSync(join(tmpdir(), 'sphana-bytes-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const bytes = randomBytes(5 << 20);
const path = join(dir, 'data.bin');
writeFileSync(path, bytes);

test('views and copies hold the file bytes: sequential walks, jumps, backwards, straddling reads, the end', () => {
  const source = new FileByteSource(path);
  try {
    assert.equal(source.size, bytes.length);
    const check = (offset: number, length: number) => {
      const { buffer, start } = source.view(offset, length);
      assert.ok(buffer.length - start >= length, `view ${offset}+${length} is long enough`);
      assert.ok(buffer.subarray(start, start + length).equals(bytes.subarray(offset, offset + length)), `view ${offset}+${length}`);
    };
    for (let at = 0; at < 3 << 20; at += 7919) check(at, 13); // a dense walk through growing windows
    let seed = 1;
    const next = (n: number) => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed % n; };
    for (let i = 0; i < 2000; i++) {
      const length = [1, 10, 4096, 20000, 300000][next(5)];
      check(next(bytes.length - length), length);
    }
    check(bytes.length - 1, 1);
    check(0, 2 << 20); // longer than the largest window
    assert.ok(source.copy(12345, 54321).equals(bytes.subarray(12345, 12345 + 54321)));
    assert.throws(() => source.view(bytes.length - 4, 8), RangeError);
  } finally {
    source.close();
  }
});

test('a jump reads a 16 KiB window; continuing doubles it up to 1 MiB', () => {
  const source = new FileByteSource(path);
  try {
    const window = (offset: number) => source.view(offset, 1).buffer.length;
    assert.equal(window(1 << 20), 16 << 10); // a jump
    let end = (1 << 20) + (16 << 10);
    const sizes: number[] = [];
    for (let i = 0; i < 8; i++) {
      const size = window(end);
      sizes.push(size);
      end += size;
    }
    assert.deepEqual(sizes, [32, 64, 128, 256, 512, 1024, 1024, 1024].map((k) => k << 10));
    assert.equal(window(1 << 19), 16 << 10); // backwards: a jump again
    assert.equal(window(bytes.length - 100), 100); // never past the end
  } finally {
    source.close();
  }
});
