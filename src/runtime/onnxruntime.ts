import { createRequire } from 'node:module';
import { EnvironmentError, InputError } from '../errors.js';

/**
 * The one module that touches onnxruntime-node. Everything else passes plain typed arrays
 * and shapes through `RuntimeSession`.
 */

type Ort = typeof import('onnxruntime-node');
let ortModule: Ort | undefined;

function ort(): Ort {
  if (!ortModule) {
    try {
      ortModule = createRequire(import.meta.url)('onnxruntime-node') as Ort;
    } catch (error) {
      throw new EnvironmentError('E_ORT_MISSING', `onnxruntime-node cannot be loaded: ${(error as Error).message.split('\n')[0]}`, {
        hint: 'run `npm install` in the sphana folder (with ONNXRUNTIME_NODE_INSTALL=skip offline)',
      });
    }
  }
  return ortModule;
}

export function onnxruntimeVersion(): string {
  return (createRequire(import.meta.url)('onnxruntime-node/package.json') as { version: string }).version;
}

export type ElementData = Float32Array | BigInt64Array | Int32Array | Uint8Array | Uint16Array;

export interface HostTensor {
  type: 'float32' | 'int64' | 'int32' | 'float16' | 'bool' | 'uint8';
  data: ElementData;
  dims: number[];
}

export interface SessionOptions {
  threads?: number;
}

export interface RuntimeSession {
  readonly path: string;
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  run(feeds: Record<string, HostTensor>, outputs?: readonly string[]): Promise<Record<string, HostTensor>>;
  release(): Promise<void>;
}

export async function openSession(path: string, options: SessionOptions = {}): Promise<RuntimeSession> {
  const runtime = ort();
  let session: import('onnxruntime-node').InferenceSession;
  try {
    session = await runtime.InferenceSession.create(path, {
      intraOpNumThreads: options.threads ?? 2,
      interOpNumThreads: 1,
      executionProviders: ['cpu'],
      graphOptimizationLevel: 'all',
      logSeverityLevel: 3,
    });
  } catch (error) {
    const message = String((error as Error).message ?? error).split('\n')[0];
    throw new InputError('E_ORT_SESSION', `onnxruntime cannot load ${path}: ${message}`, {
      hint: 'the model is invalid for onnxruntime; inspect it with `sphana inspect`',
      cause: error,
    });
  }
  return {
    path,
    inputNames: session.inputNames,
    outputNames: session.outputNames,
    async run(feeds, outputs) {
      const ortFeeds: Record<string, import('onnxruntime-node').Tensor> = {};
      for (const [name, t] of Object.entries(feeds)) ortFeeds[name] = new runtime.Tensor(t.type, t.data as never, t.dims);
      let result: Record<string, import('onnxruntime-node').Tensor>;
      try {
        result = outputs ? await session.run(ortFeeds, outputs as string[]) : await session.run(ortFeeds);
      } catch (error) {
        throw new InputError('E_ORT_RUN', `onnxruntime failed to run ${path}: ${String((error as Error).message ?? error).split('\n')[0]}`, { cause: error });
      }
      const out: Record<string, HostTensor> = {};
      for (const [name, t] of Object.entries(result)) {
        out[name] = { type: t.type as HostTensor['type'], data: t.data as ElementData, dims: [...t.dims] };
      }
      return out;
    },
    release: () => session.release(),
  };
}
