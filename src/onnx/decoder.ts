import { InputError } from '../errors.js';
import type { ByteSource } from './byte-source.js';
import { type FieldSpec, type MessageSpec, wireTypeOf } from './schema.js';

/**
 * A schema-driven protobuf decoder that streams from a ByteSource. Messages become plain
 * objects keyed by the .proto field names; tensor payload fields become `LazyField`s that
 * only record where their bytes are. Every length is checked against its enclosing message
 * before anything is read or allocated, nesting is bounded, the number of nodes, value infos,
 * attributes and messages is bounded relative to the file's size, and unknown fields are
 * skipped (and counted) by wire type.
 *
 * The decoded value means what protobuf (onnx's C++/upb parser) means, so that every check
 * sees the tensors onnx and onnxruntime would see:
 * - a singular message field that occurs more than once is merged, not replaced: later scalars
 *   win, repeated fields concatenate, submessages merge recursively (so concatenated
 *   ModelProtos merge too);
 * - a singular scalar that occurs more than once: the last value wins;
 * - setting a oneof member clears its siblings;
 * - repeated scalars are accepted packed and unpacked, mixed;
 * - an enum value that onnx.proto (proto2: closed enums) does not declare is an unknown field
 *   and leaves the field as it was.
 * A known field with the wrong wire type and groups (wire types 3/4) are refused (E_NOT_ONNX);
 * protobuf would keep them as unknown fields, so refusing hides nothing from the checks.
 */

/** Where a tensor payload field's bytes are: re-parse [start, end) for field `fieldId`. */
export interface LazyField {
  readonly lazy: true;
  readonly fieldId: number;
  /** Extent in the source from the first to the last occurrence that counts (for a singular
   * field: only the last one; when copies of the message were merged the extent also covers
   * the bytes between them). */
  start: number;
  end: number;
  /** Number of occurrences on the wire that count (a packed run counts once). */
  occurrences: number;
  /** Sum of the payload bytes of every length-delimited occurrence that counts. */
  payloadBytes: number;
  /** Whether any occurrence was length-delimited (packed, or bytes/string). */
  delimited: boolean;
}

export type Decoded = { [field: string]: unknown; $unknownFields?: number };

export const MAX_DEPTH = 100;
const MAX_STRING_BYTES = 64 << 20;

type ReaderErrorCode = 'E_TRUNCATED' | 'E_CORRUPT' | 'E_NOT_ONNX' | 'E_LIMIT_EXCEEDED';

/**
 * Bounded work: how many messages of a kind a file of `bytes` bytes may hold. The smallest
 * real node, value info and attribute take well over the per-item byte figures below (README,
 * "Security"), so a real model never reaches a cap; a file of empty messages does long before
 * its objects fill the heap.
 */
export const COUNT_LIMITS: Record<string, { base: number; bytesPerItem: number }> = {
  'onnx.NodeProto': { base: 4096, bytesPerItem: 16 },
  'onnx.ValueInfoProto': { base: 4096, bytesPerItem: 8 },
  'onnx.AttributeProto': { base: 4096, bytesPerItem: 8 },
  /** Every message of any kind (dims, tensors, entries, ...). */
  '*': { base: 65536, bytesPerItem: 4 },
};

export function countLimit(kind: string, fileBytes: number): number {
  const { base, bytesPerItem } = COUNT_LIMITS[kind];
  return base + Math.floor(fileBytes / bytesPerItem);
}

export class DecodeError extends InputError {
  readonly offset: number;
  constructor(code: ReaderErrorCode, message: string, offset: number) {
    super(code, `${message} (at byte ${offset})`, { details: { offset } });
    this.offset = offset;
  }
}

export class StreamDecoder {
  private pos = 0;
  private readonly utf8 = new TextDecoder('utf-8');
  private readonly counts = new Map<string, number>();
  private readonly limits: Map<string, number>;

  constructor(private readonly source: ByteSource) {
    this.limits = new Map(Object.keys(COUNT_LIMITS).map((kind) => [kind, countLimit(kind, source.size)]));
  }

  /** Decodes the whole source as one message of `spec`. */
  decodeRoot(spec: MessageSpec): Decoded {
    this.pos = 0;
    this.counts.clear();
    return this.message(spec, this.source.size, 0);
  }

  /** Decodes `[start, end)` as one message of `spec` (used to re-read lazy extents). */
  decodeRange(spec: MessageSpec, start: number, end: number): Decoded {
    this.pos = start;
    return this.message(spec, end, 0);
  }

  /** Yields [wireType, payloadStart, payloadEnd] for each occurrence of `fieldId` in [start, end). */
  *occurrences(fieldId: number, start: number, end: number): Generator<[number, number, number]> {
    this.pos = start;
    while (this.pos < end) {
      const key = this.varint(end);
      const id = Math.floor(key / 8);
      const wire = key & 7;
      const payloadStart = this.pos;
      this.skip(wire, end);
      if (id !== fieldId) continue;
      if (wire === 2) {
        this.pos = payloadStart;
        const length = this.length(end);
        yield [wire, this.pos, this.pos + length];
        this.pos += length;
      } else {
        yield [wire, payloadStart, this.pos];
      }
    }
  }

  private fail(code: ReaderErrorCode, message: string, at = this.pos): never {
    throw new DecodeError(code, message, at);
  }

  private overrun(what: string, end: number, at: number): never {
    if (end >= this.source.size) this.fail('E_TRUNCATED', `${what} runs past the end of the file`, at);
    this.fail('E_CORRUPT', `${what} runs past the end of its enclosing message`, at);
  }

  /** Bounded work: one more message of `kind` (and one more of any kind). */
  private count(kind: string): void {
    for (const k of [kind, '*']) {
      const limit = this.limits.get(k);
      if (limit === undefined) continue;
      const n = (this.counts.get(k) ?? 0) + 1;
      this.counts.set(k, n);
      if (n > limit) {
        const what = k === '*' ? 'messages' : `${k.replace(/^onnx\./, '')} messages`;
        this.fail('E_LIMIT_EXCEEDED', `more than ${limit} ${what} in a file of ${this.source.size} bytes`);
      }
    }
  }

  /** Decodes one message into a new object, or into `into` (protobuf's merge of a repeated singular message). */
  private message(spec: MessageSpec, end: number, depth: number, into?: Decoded): Decoded {
    if (depth > MAX_DEPTH) this.fail('E_CORRUPT', `messages nested deeper than ${MAX_DEPTH} levels`);
    this.count(spec.name);
    const out: Decoded = into ?? {};
    while (this.pos < end) {
      const keyAt = this.pos;
      const key = this.varint(end);
      const id = Math.floor(key / 8);
      const wire = key % 8;
      if (id === 0) this.fail('E_NOT_ONNX', `field number 0 in ${spec.name}`, keyAt);
      if (wire === 6 || wire === 7) this.fail('E_NOT_ONNX', `invalid wire type ${wire} in ${spec.name}`, keyAt);
      if (wire === 3 || wire === 4) this.fail('E_NOT_ONNX', `group wire type ${wire} in ${spec.name}`, keyAt);
      const field = spec.fields.get(id);
      if (!field) {
        this.skip(wire, end);
        unknownField(out);
        continue;
      }
      this.field(out, field, wire, end, depth, keyAt);
    }
    if (this.pos > end) this.overrun(`${spec.name} field`, end, end);
    return out;
  }

  private field(out: Decoded, field: FieldSpec, wire: number, end: number, depth: number, keyAt: number): void {
    const expected = wireTypeOf(field.kind);
    const packed = wire === 2 && expected !== 2 && field.repeated;
    if (wire !== expected && !packed) {
      this.fail('E_NOT_ONNX', `field ${field.name} (${field.id}) has wire type ${wire}, expected ${expected}`, keyAt);
    }
    if (field.lazy) {
      this.lazy(out, field, wire, end, keyAt);
      return;
    }
    if (field.kind === 'message') {
      const length = this.length(end);
      const stop = this.pos + length;
      if (field.repeated) {
        push(out, field, this.message(field.message!, stop, depth + 1));
        return;
      }
      // Singular: a second occurrence merges into the first (protobuf's MergeFrom).
      const known = out[field.name];
      clearSiblings(out, field);
      out[field.name] = this.message(field.message!, stop, depth + 1, isMessage(known) ? known : undefined);
      return;
    }
    if (packed) {
      const length = this.length(end);
      const stop = this.pos + length;
      const values = (out[field.name] as unknown[] | undefined) ?? [];
      while (this.pos < stop) {
        const value = this.scalar(field, stop);
        if (this.undeclaredEnum(field, value)) unknownField(out);
        else values.push(value);
      }
      if (this.pos !== stop) this.overrun(`packed ${field.name}`, stop, this.pos);
      out[field.name] = values;
      return;
    }
    const value = this.scalar(field, end);
    if (this.undeclaredEnum(field, value)) {
      unknownField(out);
      return;
    }
    if (!field.repeated) clearSiblings(out, field);
    push(out, field, value);
  }

  private undeclaredEnum(field: FieldSpec, value: unknown): boolean {
    return field.enumValues !== undefined && !field.enumValues.has(value as number);
  }

  private lazy(out: Decoded, field: FieldSpec, wire: number, end: number, keyAt: number): void {
    let payload = 0;
    if (wire === 2) {
      payload = this.length(end);
      this.pos += payload;
    } else {
      this.skip(wire, end);
    }
    const known = out[field.name] as LazyField | undefined;
    // Repeated payload fields concatenate (across merged copies too); a singular one (raw_data)
    // keeps only its last occurrence, as protobuf does.
    if (known && field.repeated) {
      known.end = this.pos;
      known.occurrences += 1;
      known.payloadBytes += payload;
      known.delimited ||= wire === 2;
    } else {
      out[field.name] = {
        lazy: true, fieldId: field.id, start: keyAt, end: this.pos,
        occurrences: 1, payloadBytes: payload, delimited: wire === 2,
      } satisfies LazyField;
    }
  }

  private scalar(field: FieldSpec, end: number): unknown {
    switch (field.kind) {
      case 'string': {
        const length = this.length(end);
        if (length > MAX_STRING_BYTES) this.fail('E_CORRUPT', `string ${field.name} of ${length} bytes`);
        const { buffer, start } = this.source.view(this.pos, length);
        this.pos += length;
        return this.utf8.decode(buffer.subarray(start, start + length));
      }
      case 'bytes': {
        const length = this.length(end);
        if (length > MAX_STRING_BYTES) this.fail('E_CORRUPT', `bytes ${field.name} of ${length} bytes`);
        const value = this.source.copy(this.pos, length);
        this.pos += length;
        return value;
      }
      case 'float': return this.fixed(4, end).readFloatLE(0);
      case 'double': return this.fixed(8, end).readDoubleLE(0);
      case 'fixed32': return this.fixed(4, end).readUInt32LE(0);
      case 'sfixed32': return this.fixed(4, end).readInt32LE(0);
      case 'fixed64': return toNumber(this.fixed(8, end).readBigUInt64LE(0));
      case 'sfixed64': return toNumber(this.fixed(8, end).readBigInt64LE(0));
      case 'bool': return this.varint64(end) !== 0;
      case 'uint32': return Number(BigInt.asUintN(32, BigInt(this.varint64(end))));
      case 'uint64': return toNumber(BigInt.asUintN(64, BigInt(this.varint64(end))));
      case 'int32': case 'enum': return Number(BigInt.asIntN(32, BigInt(this.varint64(end))));
      case 'int64': return toNumber(BigInt.asIntN(64, BigInt(this.varint64(end))));
      case 'sint32': case 'sint64': {
        const v = BigInt(this.varint64(end));
        return toNumber((v >> 1n) ^ -(v & 1n));
      }
      default: this.fail('E_CORRUPT', `unsupported field kind ${field.kind}`);
    }
  }

  private fixed(bytes: number, end: number): Buffer {
    if (this.pos + bytes > end) this.overrun('fixed-width value', end, this.pos);
    const { buffer, start } = this.source.view(this.pos, bytes);
    this.pos += bytes;
    return buffer.subarray(start, start + bytes);
  }

  /** A length prefix, checked against the enclosing message before anything is allocated. */
  private length(end: number): number {
    const at = this.pos;
    const length = this.varint(end);
    if (this.pos + length > end) this.overrun(`a length of ${length} bytes`, end, at);
    return length;
  }

  private skip(wire: number, end: number): void {
    switch (wire) {
      case 0: this.varint64(end); return;
      case 1: if (this.pos + 8 > end) this.overrun('fixed64', end, this.pos); this.pos += 8; return;
      case 5: if (this.pos + 4 > end) this.overrun('fixed32', end, this.pos); this.pos += 4; return;
      case 2: { const length = this.length(end); this.pos += length; return; }
      default: this.fail('E_NOT_ONNX', `invalid wire type ${wire}`);
    }
  }

  /** A varint that must fit in a JS number (keys, lengths). */
  private varint(end: number): number {
    const v = this.varint64(end);
    if (typeof v !== 'number') this.fail('E_CORRUPT', 'length or key too large');
    return v;
  }

  /** Up to 10 bytes; a number when exact, else a bigint (raw 64-bit pattern, unsigned). */
  private varint64(end: number): number | bigint {
    const at = this.pos;
    const limit = Math.min(end, this.source.size);
    const available = Math.min(10, limit - at);
    if (available <= 0) this.overrun('a varint', end, at);
    const { buffer, start } = this.source.view(at, available);
    let result = 0;
    let scale = 1;
    for (let i = 0; i < available; i++) {
      const byte = buffer[start + i];
      if (i < 7) {
        result += (byte & 0x7f) * scale;
        scale *= 128;
        if (byte < 0x80) { this.pos = at + i + 1; return result; }
      } else if (byte < 0x80) {
        this.pos = at + i + 1;
        let big = 0n;
        for (let j = i; j >= 0; j--) big = (big << 7n) | BigInt(buffer[start + j] & 0x7f);
        big = BigInt.asUintN(64, big);
        return big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big;
      }
    }
    if (available < 10) this.overrun('a varint', end, at);
    // Over-long: if its continuation bytes run to the end of the data it is a cut-off varint.
    const probe = Math.min(limit - at, 64);
    const tail = this.source.view(at, probe);
    let run = 0;
    while (run < probe && tail.buffer[tail.start + run] >= 0x80) run++;
    if (run === limit - at) this.overrun('a varint', end, at);
    this.fail('E_CORRUPT', 'a varint longer than 10 bytes', at);
  }
}

function unknownField(out: Decoded): void {
  out.$unknownFields = (out.$unknownFields ?? 0) + 1;
}

function isMessage(value: unknown): value is Decoded {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !Buffer.isBuffer(value);
}

/** Setting a oneof member clears the other members (protobuf semantics). */
function clearSiblings(out: Decoded, field: FieldSpec): void {
  for (const name of field.oneofSiblings ?? []) delete out[name];
}

function push(out: Decoded, field: FieldSpec, value: unknown): void {
  if (field.repeated) {
    const list = (out[field.name] as unknown[] | undefined) ?? [];
    list.push(value);
    out[field.name] = list;
  } else {
    out[field.name] = value; // last one wins, as in protobuf
  }
}

/** Exact as a number when safe, otherwise a bigint. */
function toNumber(value: bigint): number | bigint {
  return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
}

export function isLazy(value: unknown): value is LazyField {
  return typeof value === 'object' && value !== null && (value as LazyField).lazy === true;
}
