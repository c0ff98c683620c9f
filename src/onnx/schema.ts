import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';

/**
 * The ONNX schema (onnx-ml.proto, vendored from the onnx package) compiled into small field
 * tables that the streaming decoder walks. protobufjs parses the .proto; we only use its
 * reflection, never its decoder, so that tensor bytes are never copied into memory.
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

/** The compiled ModelProto spec (built once per process). */
export function modelSpec(): MessageSpec {
  if (!cached) cached = compile();
  return cached;
}

function compile(): MessageSpec {
  const root = new protobuf.Root().loadSync(protoPath(), { keepCase: true });
  root.resolveAll();
  const specs = new Map<string, { spec: MessageSpec; type: protobuf.Type }>();
  const specFor = (type: protobuf.Type): MessageSpec => {
    const fullName = type.fullName.replace(/^\./, '');
    const known = specs.get(fullName);
    if (known) return known.spec;
    const spec: MessageSpec = { name: fullName, fields: new Map() };
    specs.set(fullName, { spec, type });
    for (const field of type.fieldsArray) {
      const resolved = field.resolvedType;
      let kind: FieldSpec['kind'];
      let message: MessageSpec | undefined;
      let enumValues: Set<number> | undefined;
      if (resolved instanceof protobuf.Type) {
        kind = 'message';
        message = specFor(resolved);
      } else if (resolved instanceof protobuf.Enum) {
        kind = 'enum';
        enumValues = new Set(Object.values(resolved.values));
      } else if (SCALARS.has(field.type)) {
        kind = field.type as ScalarKind;
      } else {
        throw new Error(`onnx.proto: unsupported field type ${field.type} for ${fullName}.${field.name}`);
      }
      spec.fields.set(field.id, {
        id: field.id,
        name: field.name,
        repeated: field.repeated,
        kind,
        message,
        lazy: LAZY_FIELDS.has(`${fullName}.${field.name}`),
        ...(field.partOf ? { oneofSiblings: field.partOf.oneof.filter((name) => name !== field.name) } : {}),
        ...(enumValues ? { enumValues } : {}),
      });
    }
    return spec;
  };
  return specFor(root.lookupType('onnx.ModelProto'));
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
