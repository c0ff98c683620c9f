import { statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { InputError } from '../errors.js';
import { FileByteSource, type ByteSource, BufferByteSource } from './byte-source.js';
import { StreamDecoder } from './decoder.js';
import type { ModelProto } from './proto-types.js';
import { modelSpec } from './schema.js';

/** A decoded ONNX model: structure in memory, tensor bytes left where they are. */
export interface OnnxModel {
  /** The path as given. */
  readonly path: string;
  /** Absolute folder that external data locations are resolved against. */
  readonly baseDir: string;
  readonly fileBytes: number;
  readonly proto: ModelProto;
}

/** Reads the structure of an ONNX file; throws InputError with a stable code on bad input. */
export function readModel(path: string): OnnxModel {
  let size: number;
  try {
    const stat = statSync(path);
    if (!stat.isFile()) throw new InputError('E_NOT_A_FILE', `${path} is not a file`, { hint: 'pass the path of an .onnx file' });
    size = stat.size;
  } catch (error) {
    throw fileError(path, error);
  }
  if (size === 0) throw new InputError('E_EMPTY_FILE', `${path} is empty (0 bytes)`, { hint: 'the export or download that wrote it did not finish; produce it again' });
  let source: ByteSource;
  try {
    source = new FileByteSource(path);
  } catch (error) {
    throw fileError(path, error);
  }
  try {
    const proto = decodeModel(source, path);
    return { path, baseDir: dirname(resolve(path)), fileBytes: source.size, proto };
  } finally {
    source.close();
  }
}

/** Decodes a model held in memory (tests, small files). */
export function readModelBytes(bytes: Uint8Array, path = '<memory>', baseDir = process.cwd()): OnnxModel {
  if (bytes.length === 0) throw new InputError('E_EMPTY_FILE', `${path} is empty (0 bytes)`);
  const proto = decodeModel(new BufferByteSource(bytes), path);
  return { path, baseDir, fileBytes: bytes.length, proto };
}

function decodeModel(source: ByteSource, path: string): ModelProto {
  let proto: ModelProto;
  try {
    proto = new StreamDecoder(source).decodeRoot(modelSpec()) as ModelProto;
  } catch (error) {
    if (error instanceof InputError) {
      const what = error.code === 'E_NOT_ONNX' ? 'not an ONNX model' : error.code === 'E_TRUNCATED' ? 'truncated'
        : error.code === 'E_LIMIT_EXCEEDED' ? 'refused (too much structure for its size)' : 'corrupt';
      throw new InputError(error.code, `${path}: ${what}: ${error.message}`, { hint: hintFor(error.code), details: error.details, cause: error });
    }
    throw error;
  }
  if (!proto.graph) {
    throw new InputError('E_NOT_ONNX', `${path}: not an ONNX model (no graph)`, { hint: hintFor('E_NOT_ONNX') });
  }
  return proto;
}

function hintFor(code: string): string {
  switch (code) {
    case 'E_TRUNCATED': return 'the file is cut short; copy or export it again';
    case 'E_CORRUPT': return 'the file is damaged or was not written by an ONNX exporter; produce it again';
    case 'E_LIMIT_EXCEEDED': return 'no real ONNX model is this dense; the file was crafted or damaged (limits: README, "Security")';
    default: return 'pass an ONNX ModelProto file (.onnx)';
  }
}

function fileError(path: string, error: unknown): InputError {
  if (error instanceof InputError) return error;
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return new InputError('E_FILE_NOT_FOUND', `${path}: no such file`, { hint: 'check the path' });
  if (code === 'EACCES' || code === 'EPERM') return new InputError('E_UNREADABLE', `${path}: permission denied`, { hint: 'check the file permissions' });
  if (code === 'EISDIR') return new InputError('E_NOT_A_FILE', `${path} is a directory`, { hint: 'pass the path of an .onnx file' });
  return new InputError('E_UNREADABLE', `${path}: ${(error as Error).message}`, { cause: error });
}
