import { existsSync } from 'node:fs';
import { resolve as resolvePath } from 'node:path';
import { InputError, UsageError } from '../errors.js';
import { unsafeRevisionReason } from '../security/safe-path.js';
import { findSnapshot, hubCacheDir } from './hf-cache.js';
import { type HubTimeouts, downloadFromHub, hubTimeouts } from './hub-download.js';
import { checkWeights } from './shards.js';

export interface WeightsSource {
  dir: string;
  from: 'weights-dir' | 'hf-cache' | 'hub-download' | 'local-folder' | 'synthetic';
  revision: string | null;
}

export interface ResolveOptions {
  weightsDir?: string;
  revision?: string;
  download?: boolean;
  env?: NodeJS.ProcessEnv;
  onProgress?: (message: string) => void;
  fetchImpl?: typeof fetch;
  timeouts?: HubTimeouts;
}

/**
 * Finds a preset's weights, in order: --weights DIR, the local Hugging Face cache, a download
 * through the hub's API. When none works, one error lists every attempt and how to fix it.
 */
export async function resolveWeights(hubId: string, options: ResolveOptions = {}): Promise<WeightsSource> {
  const env = options.env ?? process.env;
  const revision = options.revision ?? 'main';
  const revisionProblem = unsafeRevisionReason(revision);
  if (revisionProblem) throw new UsageError(`--revision ${JSON.stringify(revision)} is not valid: ${revisionProblem}`, { hint: 'pass a branch, a tag or a 40-hex commit' });
  const attempts: string[] = [];
  if (options.weightsDir) {
    const dir = resolvePath(options.weightsDir);
    if (!existsSync(dir)) throw new InputError('E_WEIGHTS_NOT_FOUND', `--weights ${options.weightsDir}: no such folder`, { hint: 'check the path' });
    checkWeights(dir);
    return { dir, from: 'weights-dir', revision: null };
  }
  const cache = hubCacheDir(env);
  const snapshot = findSnapshot(cache, hubId, revision);
  if (snapshot) {
    checkWeights(snapshot.dir);
    return { dir: snapshot.dir, from: 'hf-cache', revision: snapshot.commit };
  }
  attempts.push(`hf cache ${cache}: no snapshot of ${hubId}@${revision}`);
  if (options.download !== false) {
    try {
      const got = await downloadFromHub(cache, hubId, revision, {
        endpoint: env.HF_ENDPOINT, token: env.HF_TOKEN ?? env.HUGGING_FACE_HUB_TOKEN, onProgress: options.onProgress, fetchImpl: options.fetchImpl,
        timeouts: options.timeouts ?? hubTimeouts(env),
      });
      checkWeights(got.dir);
      return { dir: got.dir, from: 'hub-download', revision: got.commit };
    } catch (error) {
      if (!(error instanceof InputError)) throw error;
      // A hub that sent something untrustworthy is reported as such, not as one more missing source.
      if (['E_MISSING_SHARD', 'E_HUB_BAD_RESPONSE', 'E_UNSAFE_PATH', 'E_BAD_ENDPOINT'].includes(error.code)) throw error;
      attempts.push(`hub download: ${error.message}`);
    }
  } else {
    attempts.push('hub download: disabled (--offline)');
  }
  throw new InputError('E_NO_WEIGHTS', `no weights for ${hubId}: ${attempts.join('; ')}`, {
    hint: `pass --weights DIR, put the model in the Hugging Face cache (HF_HUB_CACHE), set HF_TOKEN for gated models, or run with --synthetic tiny|full`,
    details: { attempts },
  });
}
