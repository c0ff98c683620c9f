import { closeSync, fstatSync, openSync, readSync } from 'node:fs';

/**
 * Random access to the bytes of a model without holding them: a file is read through one
 * small window, so memory stays flat however large the file is.
 */
export interface ByteSource {
  readonly size: number;
  /** Returns a view of at least `length` bytes starting at `offset`, valid until the next call. */
  view(offset: number, length: number): { buffer: Buffer; start: number };
  /** Copies `length` bytes starting at `offset` into a new Buffer. */
  copy(offset: number, length: number): Buffer;
  close(): void;
}

/**
 * The window starts small after a jump (decoding skips a tensor's payload, then reads its next
 * few header bytes) and doubles while reads continue where it ended (a dense graph section).
 * With a fixed 1 MiB window, inspecting a 1.5 GB inline model copied 45 MiB from the page
 * cache to read 45 small headers (~20-30 ms of its start-up); 16 KiB windows copy 0.7 MiB.
 */
const MIN_WINDOW_BYTES = 16 << 10;
const MAX_WINDOW_BYTES = 1 << 20;

export class FileByteSource implements ByteSource {
  readonly size: number;
  private fd: number;
  private backing: Buffer = Buffer.alloc(0);
  private window: Buffer = Buffer.alloc(0);
  private windowStart = 0;
  private nextWindow = MIN_WINDOW_BYTES;

  constructor(path: string) {
    this.fd = openSync(path, 'r');
    this.size = fstatSync(this.fd).size;
  }

  view(offset: number, length: number): { buffer: Buffer; start: number } {
    const windowEnd = this.windowStart + this.window.length;
    if (offset >= this.windowStart && offset + length <= windowEnd) {
      return { buffer: this.window, start: offset - this.windowStart };
    }
    const sequential = offset >= this.windowStart && offset <= windowEnd;
    this.nextWindow = sequential ? Math.min(this.nextWindow * 2, MAX_WINDOW_BYTES) : MIN_WINDOW_BYTES;
    const want = Math.min(Math.max(length, this.nextWindow), this.size - offset);
    if (want < length) throw new RangeError(`read past end of file at ${offset}+${length}`);
    if (this.backing.length < want) this.backing = Buffer.allocUnsafe(Math.max(want, Math.min(2 * this.backing.length, MAX_WINDOW_BYTES)));
    const got = readFully(this.fd, this.backing, want, offset);
    this.window = this.backing.subarray(0, got);
    this.windowStart = offset;
    return { buffer: this.window, start: 0 };
  }

  copy(offset: number, length: number): Buffer {
    const out = Buffer.allocUnsafe(length);
    const got = readFully(this.fd, out, length, offset);
    if (got < length) throw new RangeError(`read past end of file at ${offset}+${length}`);
    return out;
  }

  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }
}

function readFully(fd: number, into: Buffer, length: number, position: number): number {
  let done = 0;
  while (done < length) {
    const n = readSync(fd, into, done, length - done, position + done);
    if (n === 0) break;
    done += n;
  }
  return done;
}

export class BufferByteSource implements ByteSource {
  readonly size: number;
  constructor(private readonly bytes: Uint8Array) {
    this.size = bytes.length;
  }
  view(offset: number, length: number): { buffer: Buffer; start: number } {
    if (offset + length > this.size) throw new RangeError(`read past end at ${offset}+${length}`);
    return { buffer: Buffer.from(this.bytes.buffer, this.bytes.byteOffset, this.bytes.length), start: offset };
  }
  copy(offset: number, length: number): Buffer {
    return Buffer.from(this.bytes.subarray(offset, offset + length));
  }
  close(): void {}
}
