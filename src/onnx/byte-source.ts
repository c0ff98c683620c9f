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

const WINDOW_BYTES = 1 << 20;

export class FileByteSource implements ByteSource {
  readonly size: number;
  private fd: number;
  private window: Buffer = Buffer.alloc(0);
  private windowStart = 0;

  constructor(path: string) {
    this.fd = openSync(path, 'r');
    this.size = fstatSync(this.fd).size;
  }

  view(offset: number, length: number): { buffer: Buffer; start: number } {
    const windowEnd = this.windowStart + this.window.length;
    if (offset >= this.windowStart && offset + length <= windowEnd) {
      return { buffer: this.window, start: offset - this.windowStart };
    }
    const want = Math.min(Math.max(length, WINDOW_BYTES), this.size - offset);
    if (want < length) throw new RangeError(`read past end of file at ${offset}+${length}`);
    if (this.window.length < want) this.window = Buffer.allocUnsafe(want);
    const got = readFully(this.fd, this.window, want, offset);
    this.window = this.window.subarray(0, got);
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
