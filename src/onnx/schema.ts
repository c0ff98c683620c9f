import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/**
 * The ONNX schema (onnx-ml.proto, vendored from the onnx package) compiled into small field
 * tables that the streaming decoder walks. protobufjs parses the .proto; we only use its
 * reflection, never its decoder, so that tensor bytes are never copied into memory.
 *
 * Parsing the .proto with protobufjs costs about 0.2 s of start-up (loading protobufjs, then
 * parsing), most of `sphana inspect`'s time. So the tables are also kept compiled in
 * `onnx-schema.json` beside the .proto, keyed by the .proto's sha256: when the key matches they
 * are used as they are; otherwise (the .proto was edited) protobufjs compiles them as before.
 * `node scripts/compile-onnx-schema.js` rewrites the JSON; a test checks it equals a fresh compile.
 * At start-up the key compared is `protoFnv1a` (an FNV-1a of the bytes, with their length, see
 * fnv1a): loading node:crypto for the sha256 cost every inspect several ms; the sha256 stays, for
 * the test and for people.
 */

export type ScalarKind =
  | 'int32' | 'int64' | 'uint32' | 'uint64' | 'sint32' | 'sint64' | 'bool' | 'enum'
  | 'fixed32' | 'sfixed32' | 'float' | 'fixed64' | 'sfixed64' | 'double'
  | 'string' | 'bytes';

export interface FieldSpec {
  readonly id: number;
  readonly name: string;
  readonly repeated: boolean;
  /** A scalar kind, or 'message' with `message` set. */
  readonly kind: ScalarKind | 'message';
  readonly message?: MessageSpec;
  /** Tensor payloads: recorded as a byte extent, never read during decoding. */
  readonly lazy: boolean;
  /** The other members of this field's oneof: setting this field clears them (as protobuf does). */
  readonly oneofSiblings?: readonly string[];
  /** For enum fields: the values the enum declares. onnx.proto is proto2, whose enums are closed:
   * a value outside this set is kept as an unknown field and leaves the field as it was. */
  readonly enumValues?: ReadonlySet<number>;
}

export interface MessageSpec {
  readonly name: string;
  readonly fields: Map<number, FieldSpec>;
}

/** TensorProto fields that hold element data; they can be gigabytes, so they stay on disk. */
const LAZY_FIELDS = new Set([
  'onnx.TensorProto.raw_data',
  'onnx.TensorProto.float_data',
  'onnx.TensorProto.int32_data',
  'onnx.TensorProto.string_data',
  'onnx.TensorProto.int64_data',
  'onnx.TensorProto.double_data',
  'onnx.TensorProto.uint64_data',
]);

const SCALARS = new Set<string>([
  'int32', 'int64', 'uint32', 'uint64', 'sint32', 'sint64', 'bool',
  'fixed32', 'sfixed32', 'float', 'fixed64', 'sfixed64', 'double', 'string', 'bytes',
]);

let cached: MessageSpec | undefined;

export function protoPath(): string {
  // dist/src/onnx/schema.js -> src/onnx/onnx.proto ; src/onnx/schema.ts -> src/onnx/onnx.proto
  return fileURLToPath(new URL('../../../src/onnx/onnx.proto', import.meta.url));
}

export function compiledSchemaPath(): string {
  return fileURLToPath(new URL('../../../src/onnx/onnx-schema.json', import.meta.url));
}

/** Extra facts of a field: its oneof's other members; an enum's declared values. */
export interface FieldExtras { oneofSiblings?: string[]; enumValues?: number[] }

/** The compiled tables as stored: message full name → [field id, name, repeated, kind, message type, extras]. */
export interface CompiledSchema {
  protoSha256: string;
  /** `<length>:<FNV-1a 32-bit hex>` of the .proto's bytes: the key checked at start-up. */
  protoFnv1a: string;
  root: string;
  messages: Record<string, Array<[number, string, boolean, FieldSpec['kind'], string | null, FieldExtras]>>;
}

/**
 * Tables handed over by the start-up bundle (scripts/bundle-fast-path.js), which checked them
 * against the .proto when it was built; bin/sphana.js takes the bundle only while neither file
 * has changed since, so the bundle reads neither (about 3 ms of a cold start).
 */
let checkedTables: CompiledSchema | undefined;

export function useCheckedTables(tables: CompiledSchema): void {
  checkedTables = tables;
}

/** The compiled ModelProto spec (built once per process). */
export function modelSpec(): MessageSpec {
  if (!cached && checkedTables) cached = fromTables(checkedTables);
  if (!cached) {
    const proto = readFileSync(protoPath());
    let stored: CompiledSchema | undefined;
    try {
      stored = JSON.parse(readFileSync(compiledSchemaPath(), 'utf8')) as CompiledSchema;
    } catch {
      stored = undefined;
    }
    cached = fromTables(stored && stored.protoFnv1a === fnv1a(proto) ? stored : compileTables(protoPath()));
  }
  return cached;
}

/** The tables as `onnx-schema.json` holds them, compiled from the .proto by protobufjs. */
export function compileTables(path = protoPath()): CompiledSchema {
  const proto = readFileSync(path);
  const require = createRequire(import.meta.url);
  const sha = (require('node:crypto') as typeof import('node:crypto')).createHash('sha256').update(proto).digest('hex');
  const protobuf = require('protobufjs') as typeof import('protobufjs');
  const root = new protobuf.Root().loadSync(path, { keepCase: true });
  root.resolveAll();
  const messages: CompiledSchema['messages'] = {};
  const visit = (type: import('protobufjs').Type): string => {
    const fullName = type.fullName.replace(/^\./, '');
    if (messages[fullName]) return fullName;
    const fields: CompiledSchema['messages'][string] = [];
    messages[fullName] = fields;
    for (const field of type.fieldsArray) {
      const resolved = field.resolvedType;
      const extras: FieldExtras = field.partOf ? { oneofSiblings: field.partOf.oneof.filter((name) => name !== field.name) } : {};
      if (resolved instanceof protobuf.Type) {
        fields.push([field.id, field.name, field.repeated, 'message', visit(resolved), extras]);
      } else if (resolved instanceof protobuf.Enum) {
        fields.push([field.id, field.name, field.repeated, 'enum', null, { ...extras, enumValues: Object.values(resolved.values) }]);
      } else if (SCALARS.has(field.type)) {
        fields.push([field.id, field.name, field.repeated, field.type as ScalarKind, null, extras]);
      } else {
        throw new Error(`onnx.proto: unsupported field type ${field.type} for ${fullName}.${field.name}`);
      }
    }
    return fullName;
  };
  return { protoSha256: sha, protoFnv1a: fnv1a(proto), root: visit(root.lookupType('onnx.ModelProto')), messages };
}

/**
 * `<length>:<hex>`: FNV-1a (32-bit) over the bytes taken as little-endian 32-bit words, then the
 * 0-3 tail bytes — a cheap key for "the .proto was edited" (a quarter of a byte-wise loop's
 * iterations: about 0.5 ms for the 44 KB .proto as first-run JavaScript; not a security check).
 */
export function fnv1a(bytes: Uint8Array): string {
  const prime = 0x01000193;
  const words = bytes.length >> 2;
  let h = 0x811c9dc5;
  if (LITTLE_ENDIAN && bytes.byteOffset % 4 === 0) {
    const view = new Int32Array(bytes.buffer, bytes.byteOffset, words);
    for (let i = 0; i < words; i++) h = Math.imul(h ^ view[i], prime);
  } else {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
    for (let i = 0; i < words; i++) h = Math.imul(h ^ view.getInt32(i * 4, true), prime);
  }
  for (let i = words * 4; i < bytes.length; i++) h = Math.imul(h ^ bytes[i], prime);
  return `${bytes.length}:${(h >>> 0).toString(16).padStart(8, '0')}`;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function fromTables(tables: CompiledSchema): MessageSpec {
  const specs = new Map<string, MessageSpec>();
  for (const name of Object.keys(tables.messages)) specs.set(name, { name, fields: new Map() });
  for (const [name, fields] of Object.entries(tables.messages)) {
    const spec = specs.get(name)!;
    for (const [id, fieldName, repeated, kind, message, extras] of fields) {
      const target = message === null ? undefined : specs.get(message);
      if (kind === 'message' && !target) throw new Error(`onnx-schema.json: ${name}.${fieldName} names unknown message ${message}`);
      spec.fields.set(id, {
        id, name: fieldName, repeated, kind, message: target, lazy: LAZY_FIELDS.has(`${name}.${fieldName}`),
        ...(extras?.oneofSiblings ? { oneofSiblings: extras.oneofSiblings } : {}),
        ...(extras?.enumValues ? { enumValues: new Set(extras.enumValues) } : {}),
      });
    }
  }
  const root = specs.get(tables.root);
  if (!root) throw new Error(`onnx-schema.json: no root message ${tables.root}`);
  return root;
}

/** Wire type each kind is written with (repeated scalars may also be packed: wire type 2). */
export function wireTypeOf(kind: FieldSpec['kind']): number {
  switch (kind) {
    case 'fixed64': case 'sfixed64': case 'double': return 1;
    case 'fixed32': case 'sfixed32': case 'float': return 5;
    case 'string': case 'bytes': case 'message': return 2;
    default: return 0;
  }
}
