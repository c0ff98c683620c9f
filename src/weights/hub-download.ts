import { createWriteStream, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { InputError } from '../errors.js';
import { repoFolder } from './hf-cache.js';

/** Files of a model repo sphana needs (weights, configs, tokenizer). */
const WANTED = /^(config\.json|generation_config\.json|model(-\d+-of-\d+)?\.safetensors|model\.safetensors\.index\.json|tokenizer\.json|tokenizer\.model|tokenizer_config\.json|special_tokens_map\.json)$/;

export interface DownloadOptions {
  endpoint?: string;
  token?: string;
  onProgress?: (message: string) => void;
  fetchImpl?: typeof fetch;
}

/**
 * Downloads a model through the hub's HTTP API into the hub cache layout
 * (models--org--name/snapshots/<commit>/, refs/<revision>), file by file to temporary names.
 */
export async function downloadFromHub(cache: string, hubId: string, revision: string, options: DownloadOptions = {}): Promise<{ dir: string; commit: string }> {
  const endpoint = (options.endpoint ?? 'https://huggingface.co').replace(/\/$/, '');
  const doFetch = options.fetchImpl ?? fetch;
  const headers: Record<string, string> = options.token ? { authorization: `Bearer ${options.token}` } : {};
  const get = async (url: string) => {
    let response: Response;
    try {
      response = await doFetch(url, { headers, redirect: 'follow' });
    } catch (error) {
      throw new InputError('E_HUB_UNREACHABLE', `cannot reach ${endpoint}: ${(error as Error).message}`, { hint: 'check the network, or set HF_ENDPOINT' });
    }
    if (response.status === 401 || response.status === 403) {
      throw new InputError('E_HUB_GATED', `${hubId} needs authorisation (HTTP ${response.status})`, {
        hint: `accept the model's licence on the hub and set HF_TOKEN to a token with access`,
      });
    }
    if (response.status === 404) throw new InputError('E_HUB_NOT_FOUND', `${hubId}@${revision} not found on ${endpoint}`, { hint: 'check the model id and revision' });
    if (!response.ok) throw new InputError('E_HUB_HTTP', `${url}: HTTP ${response.status}`, { hint: 'try again later' });
    return response;
  };
  const info = (await (await get(`${endpoint}/api/models/${hubId}/revision/${encodeURIComponent(revision)}`)).json()) as { sha?: string; siblings?: Array<{ rfilename: string }> };
  const commit = info.sha ?? revision;
  const files = (info.siblings ?? []).map((s) => s.rfilename).filter((f) => WANTED.test(f));
  if (!files.includes('config.json')) throw new InputError('E_HUB_NO_CONFIG', `${hubId} has no config.json`, { hint: 'is this a transformers model?' });
  const repo = repoFolder(cache, hubId);
  const dir = join(repo, 'snapshots', commit);
  mkdirSync(dir, { recursive: true });
  for (const [i, file] of files.entries()) {
    options.onProgress?.(`downloading ${file} (${i + 1}/${files.length})`);
    const response = await get(`${endpoint}/${hubId}/resolve/${commit}/${file}`);
    const target = join(dir, file);
    const tmp = `${target}.sphana-part`;
    mkdirSync(dirname(target), { recursive: true });
    try {
      await pipeline(Readable.fromWeb(response.body as never), createWriteStream(tmp));
      renameSync(tmp, target);
    } catch (error) {
      rmSync(tmp, { force: true });
      throw error;
    }
  }
  mkdirSync(join(repo, 'refs'), { recursive: true });
  writeFileSync(join(repo, 'refs', revision), commit);
  return { dir, commit };
}
