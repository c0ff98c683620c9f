import { mkdirSync, renameSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { removeOnExit } from '../cleanup.js';
import { InputError, JobFailedError } from '../errors.js';
import type { ManifestGgufSource } from '../manifest/schema.js';
import { type HfConfig, familyFor } from '../models/index.js';
import { BridgeError } from '../python/bridge.js';
import type { BridgeEnvironment } from '../python/environment.js';
import { type GgufToHfResult, bridgeGgufToHf } from '../python/entry-points.js';
import { readJson } from '../tokenizer/special-tokens.js';

/** What the pipeline records for the GGUF conversion step (and puts in the manifest's source). */
export interface GgufConversion {
  gguf: ManifestGgufSource;
  architectures: string[];
  seconds: Record<string, number>;
  peakRssBytes: number | null;
}

export function manifestGguf(result: GgufToHfResult): ManifestGgufSource {
  const g = result.gguf;
  return {
    file: g.file, bytes: g.bytes, sha256: g.sha256, architecture: g.architecture, fileType: g.fileTypeName,
    quantizationTypes: Object.keys(g.tensorTypes), tensorTypes: g.tensorTypes, bosTokenId: g.bosTokenId, eosTokenId: g.eosTokenId,
  };
}

/** The bridge's typed GGUF errors as sphana errors with their own codes (exit 3 for a bad file). */
function typed(error: unknown, file: string): unknown {
  if (!(error instanceof BridgeError)) return error;
  const message = error.message.replace(/^gguf-to-hf: \w+: /, '');
  const { request: _request, stderrTail: _tail, ...details } = error.details ?? {};
  const code = details.code;
  if (error.errorClass === 'InputError' && code === 'E_GGUF_INVALID') {
    return new InputError('E_GGUF_INVALID', message, { hint: `${file} is not a complete, well-formed GGUF file: fetch it again`, details, cause: error });
  }
  if (error.errorClass === 'InputError' && code === 'E_GGUF_UNSUPPORTED') {
    return new InputError('E_GGUF_UNSUPPORTED', message, { hint: "transformers' GGUF loader reads the file's architecture and tensor types; pick a GGUF of a supported family", details, cause: error });
  }
  if (error.errorClass === 'InputError' && code === 'E_FILE_NOT_FOUND') return new InputError('E_FILE_NOT_FOUND', message, { cause: error });
  if (error.errorClass === 'GgufMismatch') {
    return new JobFailedError('E_GGUF_MISMATCH', message, { hint: "the file's tokenizer metadata and the converted configs disagree; the details list each difference", details, cause: error });
  }
  return error;
}

/**
 * Dequantizes a GGUF file into an fp32 Hugging Face folder at `target`: the bridge writes into
 * a staging folder beside it, the converted config.json must name an architecture that
 * src/models/ supports, and only then is the staging folder renamed into place.
 */
export async function convertGguf(gguf: string, file: string, target: string, env: BridgeEnvironment, options: { signal?: AbortSignal; onProgress?: (m: string) => void } = {}): Promise<GgufConversion> {
  const staging = `${target}.sphana-tmp`;
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging, { recursive: true });
  const forget = removeOnExit(staging);
  try {
    const result = await bridgeGgufToHf(env, { gguf, outDir: staging }, { signal: options.signal, onProgress: (p) => options.onProgress?.(`${p.step}: ${p.message}`) })
      .catch((error: unknown) => { throw typed(error, file); });
    familyFor(readJson<HfConfig>(join(staging, 'config.json'), 'converted config'), `${file} (converted config.json)`);
    rmSync(target, { recursive: true, force: true });
    mkdirSync(dirname(target), { recursive: true });
    renameSync(staging, target);
    return { gguf: manifestGguf(result), architectures: result.architectures, seconds: result.seconds, peakRssBytes: result.peakRssBytes };
  } finally {
    rmSync(staging, { recursive: true, force: true });
    forget();
  }
}
