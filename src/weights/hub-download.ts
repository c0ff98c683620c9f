import { createHash } from 'node:crypto';
import { createWriteStream, mkdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { removeOnExit, runTag } from '../cleanup.js';
import { renameDurable, writeFileAtomic } from '../artifacts/files.js';
import { EnvironmentError, InputError } from '../errors.js';
import { COMMIT_SHA, safePathIn, unsafeRevisionReason } from '../security/safe-path.js';
import { repoFolder } from './hf-cache.js';
import { type DownloadProgress, downloadText } from '../progress.js';

/** Files of a model repo sphana needs (weights, configs, tokenizer). */
const WANTED = /^(config\.json|generation_config\.json|model(-\d+-of-\d+)?\.safetensors|model\.safetensors\.index\.json|tokenizer\.json|tokenizer\.model|tokenizer_config\.json|special_tokens_map\.json)$/;

/** A hub model id: `org/name`. */
export const HUB_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,95}\/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$/;

export interface HubTimeouts {
  /** Until the response headers arrive (connect, TLS, the server's first byte). */
  connectMs: number;
  /** Longest silence between two chunks of a body. */
  readMs: number;
}

export const DEFAULT_HUB_TIMEOUTS: HubTimeouts = { connectMs: 30_000, readMs: 60_000 };

/** Timeouts from SPHANA_HUB_CONNECT_TIMEOUT_MS / SPHANA_HUB_READ_TIMEOUT_MS, else the defaults. */
export function hubTimeouts(env: NodeJS.ProcessEnv = process.env): HubTimeouts {
  const read = (name: string, fallback: number) => {
    const raw = env[name];
    if (raw === undefined || raw === '') return fallback;
    if (!/^\d+$/.test(raw) || Number(raw) < 1) throw new InputError('E_BAD_ENV', `${name} must be a positive number of milliseconds, not '${raw}'`);
    return Number(raw);
  };
  return { connectMs: read('SPHANA_HUB_CONNECT_TIMEOUT_MS', DEFAULT_HUB_TIMEOUTS.connectMs), readMs: read('SPHANA_HUB_READ_TIMEOUT_MS', DEFAULT_HUB_TIMEOUTS.readMs) };
}

export interface DownloadOptions {
  endpoint?: string;
  token?: string;
  onProgress?: (message: string) => void;
  /** Bytes as they arrive (at most every 250 ms per file, and at its end); onProgress gets the same as text. */
  onBytes?: (progress: DownloadProgress) => void;
  fetchImpl?: typeof fetch;
  timeouts?: HubTimeouts;
}

/** What the hub's API says about one file: its size, and its sha256 (LFS) or git blob sha1. */
interface Sibling {
  rfilename: string;
  size?: number;
  blobId?: string;
  lfs?: { sha256?: string; size?: number };
}

/** An endpoint with any `user:password@` removed, for every message; the credentials, if any, as a header. */
export function parseEndpoint(raw: string | undefined): { base: string; shown: string; origin: string; basic: string | null } {
  const text = (raw ?? 'https://huggingface.co').replace(/\/+$/, '');
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new InputError('E_BAD_ENDPOINT', 'HF_ENDPOINT is not a URL', { hint: 'set HF_ENDPOINT to e.g. https://huggingface.co' });
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new InputError('E_BAD_ENDPOINT', `HF_ENDPOINT must be http(s), not ${url.protocol}`);
  const basic = url.username || url.password ? Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString('base64') : null;
  url.username = '';
  url.password = '';
  url.search = '';
  url.hash = '';
  const base = url.toString().replace(/\/+$/, '');
  return { base, shown: base, origin: url.origin, basic };
}

/** Removes every credential we know of from a message (the raw endpoint, its user/password, the token). */
function redactor(raw: string | undefined, token: string | undefined): (text: string) => string {
  const secrets: string[] = [];
  if (token) secrets.push(token);
  if (raw) {
    try {
      const u = new URL(raw);
      if (u.password) secrets.push(u.password, decodeURIComponent(u.password));
      if (u.username) secrets.push(`${u.username}:`, `${decodeURIComponent(u.username)}:`);
    } catch {
      secrets.push(raw);
    }
  }
  return (text) => {
    let out = text.replace(/\/\/[^/@\s]+@/g, '//');
    for (const s of secrets.filter((x) => x.length > 0)) out = out.split(s).join('***');
    return out;
  };
}

/**
 * Downloads a model through the hub's HTTP API into the hub cache layout
 * (models--org--name/snapshots/<commit>/, refs/<revision>). The hub is untrusted: the commit
 * must be 40 hex characters, every file name goes through the path validator, every file is
 * checked against the size and sha256 (LFS) or git blob sha1 the API gives while it streams
 * to a temporary name unique to the run, connect and read timeouts end a stalled hub with
 * E_HUB_TIMEOUT, the token (and endpoint credentials) go only to the endpoint's origin, and
 * no message shows a credential.
 */
export async function downloadFromHub(cache: string, hubId: string, revision: string, options: DownloadOptions = {}): Promise<{ dir: string; commit: string }> {
  if (!HUB_ID.test(hubId)) throw new InputError('E_BAD_HUB_ID', `${JSON.stringify(hubId)} is not a hub model id (org/name)`);
  const revisionProblem = unsafeRevisionReason(revision);
  if (revisionProblem) throw new InputError('E_BAD_REVISION', `revision ${JSON.stringify(revision)} is not valid: ${revisionProblem}`, { hint: 'pass --revision a branch, tag or 40-hex commit' });
  const endpoint = parseEndpoint(options.endpoint);
  const redact = redactor(options.endpoint, options.token);
  const doFetch = options.fetchImpl ?? fetch;
  const timeouts = options.timeouts ?? hubTimeouts();
  const auth = options.token ? `Bearer ${options.token}` : endpoint.basic ? `Basic ${endpoint.basic}` : null;

  /** GET with manual redirects: the authorization header goes only to the endpoint's own origin. */
  const get = async (url: string, what: string): Promise<{ response: Response; abort: AbortController }> => {
    let current = url;
    for (let hop = 0; hop < 6; hop++) {
      const abort = new AbortController();
      const timer = setTimeout(() => abort.abort(), timeouts.connectMs);
      let response: Response;
      try {
        const headers: Record<string, string> = auth && new URL(current).origin === endpoint.origin ? { authorization: auth } : {};
        response = await doFetch(current, { headers, redirect: 'manual', signal: abort.signal });
      } catch (error) {
        if (abort.signal.aborted) {
          throw new EnvironmentError('E_HUB_TIMEOUT', `${endpoint.shown}: no response to ${what} within ${timeouts.connectMs / 1000} s`, {
            hint: 'the hub is unreachable or stalled; check the network, set SPHANA_HUB_CONNECT_TIMEOUT_MS, or pass --weights DIR',
          });
        }
        const cause = (error as Error & { cause?: Error }).cause?.message;
        throw new InputError('E_HUB_UNREACHABLE', redact(`cannot reach ${endpoint.shown}: ${(error as Error).message}${cause ? ` (${cause})` : ''}`), { hint: 'check the network, or set HF_ENDPOINT' });
      } finally {
        clearTimeout(timer);
      }
      if (response.status >= 300 && response.status < 400 && response.headers.get('location')) {
        await response.body?.cancel();
        current = new URL(response.headers.get('location')!, current).toString();
        continue;
      }
      if (response.status === 401 || response.status === 403) {
        throw new InputError('E_HUB_GATED', `${hubId} needs authorisation (HTTP ${response.status})`, { hint: `accept the model's licence on the hub and set HF_TOKEN to a token with access` });
      }
      if (response.status === 404) throw new InputError('E_HUB_NOT_FOUND', `${hubId}@${revision} not found on ${endpoint.shown}`, { hint: 'check the model id and revision' });
      if (!response.ok) throw new InputError('E_HUB_HTTP', `${endpoint.shown}: ${what}: HTTP ${response.status}`, { hint: 'try again later' });
      return { response, abort };
    }
    throw new InputError('E_HUB_HTTP', `${endpoint.shown}: ${what}: too many redirects`);
  };

  const untrusted = (what: string) => new InputError('E_HUB_BAD_RESPONSE', `${endpoint.shown} (${hubId}@${revision}): ${what}`, {
    hint: 'the hub (or HF_ENDPOINT) sent something sphana cannot trust; nothing was kept. Try again, or pass --weights DIR',
  });

  const { response: infoResponse, abort: infoAbort } = await get(`${endpoint.base}/api/models/${hubId}/revision/${encodeURIComponent(revision)}?blobs=true`, 'model info');
  const infoText = await readBody(infoResponse, infoAbort, timeouts, 16 << 20, 'model info', endpoint.shown).then((b) => b.toString('utf8'));
  let info: { sha?: unknown; siblings?: unknown };
  try {
    info = JSON.parse(infoText) as typeof info;
  } catch {
    throw untrusted('model info is not JSON');
  }
  if (typeof info.sha !== 'string' || !COMMIT_SHA.test(info.sha)) throw untrusted(`commit sha ${JSON.stringify(info.sha)} is not 40 hex characters`);
  const commit = info.sha;
  if (COMMIT_SHA.test(revision) && revision !== commit) throw untrusted(`asked for commit ${revision}, got ${commit}`);
  if (!Array.isArray(info.siblings) || info.siblings.length > 100_000) throw untrusted('the file list is missing or too long');
  const siblings = (info.siblings as Sibling[]).filter((s) => typeof s?.rfilename === 'string' && WANTED.test(s.rfilename));
  if (!siblings.some((s) => s.rfilename === 'config.json')) throw new InputError('E_HUB_NO_CONFIG', `${hubId} has no config.json`, { hint: 'is this a transformers model?' });

  const repo = repoFolder(cache, hubId);
  const dir = join(repo, 'snapshots', commit);
  const plan = siblings.map((s) => {
    const target = safePathIn(dir, s.rfilename, { what: 'hub file name', code: 'E_HUB_BAD_RESPONSE' });
    const size = s.lfs?.size ?? s.size;
    if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) throw untrusted(`${s.rfilename}: no valid size`);
    if (s.lfs && !(typeof s.lfs.sha256 === 'string' && /^[0-9a-f]{64}$/.test(s.lfs.sha256))) throw untrusted(`${s.rfilename}: invalid LFS sha256`);
    if (!s.lfs && !(typeof s.blobId === 'string' && /^[0-9a-f]{40}$/.test(s.blobId))) throw untrusted(`${s.rfilename}: no sha256 (LFS) or blob id to check it against`);
    return { name: s.rfilename, target, size, sha256: s.lfs?.sha256 ?? null, blobId: s.lfs ? null : s.blobId! };
  });
  mkdirSync(dir, { recursive: true });
  for (const [i, file] of plan.entries()) {
    options.onProgress?.(`downloading ${file.name} (${i + 1}/${plan.length})`);
    const { response, abort } = await get(`${endpoint.base}/${hubId}/resolve/${commit}/${file.name}`, file.name);
    // A compressed body's length is not the file's (fetch decompresses it); the streamed bytes are checked either way.
    const declared = response.headers.get('content-encoding') ? null : response.headers.get('content-length');
    if (declared !== null && Number(declared) !== file.size) {
      await response.body?.cancel();
      throw untrusted(`${file.name}: the server sends ${declared} bytes, the API says ${file.size}`);
    }
    const tmp = `${file.target}.${runTag()}.sphana-part`;
    mkdirSync(dirname(file.target), { recursive: true });
    const forget = removeOnExit(tmp);
    try {
      let last = 0;
      const report = (bytes: number, force: boolean) => {
        const now = performance.now();
        if (!force && now - last < 250) return;
        last = now;
        const p: DownloadProgress = { file: file.name, index: i + 1, files: plan.length, bytes, totalBytes: file.size };
        options.onBytes?.(p);
        options.onProgress?.(`downloading ${downloadText(p)}`);
      };
      const got = await streamChecked(response, abort, tmp, file.size, timeouts, file.name, endpoint.shown, (bytes) => report(bytes, false));
      report(got.bytes, true);
      const sha1 = got.sha1Blob;
      if (got.bytes !== file.size) throw untrusted(`${file.name}: got ${got.bytes} bytes, the API says ${file.size}`);
      if (file.sha256 !== null && got.sha256 !== file.sha256) throw untrusted(`${file.name}: sha256 ${got.sha256.slice(0, 12)}… differs from the API's ${file.sha256.slice(0, 12)}…`);
      if (file.blobId !== null && sha1 !== file.blobId) throw untrusted(`${file.name}: git blob sha1 ${sha1.slice(0, 12)}… differs from the API's ${file.blobId.slice(0, 12)}…`);
      renameDurable(tmp, file.target);
    } finally {
      rmSync(tmp, { force: true });
      forget();
    }
  }
  mkdirSync(join(repo, 'refs'), { recursive: true });
  writeFileAtomic(safePathIn(join(repo, 'refs'), revision, { what: 'revision' }), commit);
  return { dir, commit };
}

/** A small body (the API's JSON), capped and under the read timeout. */
async function readBody(response: Response, abort: AbortController, timeouts: HubTimeouts, max: number, what: string, shown: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of timedChunks(response, abort, timeouts, what, shown)) {
    bytes += chunk.length;
    if (bytes > max) {
      abort.abort();
      throw new InputError('E_HUB_BAD_RESPONSE', `${shown}: ${what} is larger than ${max} bytes`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** Streams a body to `tmp`, hashing it, never writing more than `size` bytes. */
async function streamChecked(response: Response, abort: AbortController, tmp: string, size: number, timeouts: HubTimeouts, what: string, shown: string, onBytes?: (bytes: number) => void): Promise<{ bytes: number; sha256: string; sha1Blob: string }> {
  const sha256 = createHash('sha256');
  const sha1 = createHash('sha1').update(`blob ${size}\0`);
  const out = createWriteStream(tmp, { flags: 'wx' });
  let bytes = 0;
  try {
    for await (const chunk of timedChunks(response, abort, timeouts, what, shown)) {
      bytes += chunk.length;
      onBytes?.(bytes);
      if (bytes > size) {
        abort.abort();
        throw new InputError('E_HUB_BAD_RESPONSE', `${shown}: ${what} is longer than the ${size} bytes the API says`, { hint: 'the hub sent something sphana cannot trust; nothing was kept' });
      }
      sha256.update(chunk);
      sha1.update(chunk);
      if (!out.write(chunk)) await new Promise<void>((resolve, reject) => { out.once('drain', resolve); out.once('error', reject); });
    }
  } finally {
    await new Promise<void>((resolve, reject) => out.end((error?: Error | null) => (error ? reject(error) : resolve())));
  }
  return { bytes, sha256: sha256.digest('hex'), sha1Blob: sha1.digest('hex') };
}

/** The body's chunks; a silence longer than the read timeout aborts with E_HUB_TIMEOUT. */
async function* timedChunks(response: Response, abort: AbortController, timeouts: HubTimeouts, what: string, shown: string): AsyncGenerator<Buffer> {
  if (!response.body) return;
  const reader = response.body.getReader();
  let timedOut = false;
  try {
    for (;;) {
      let timer: NodeJS.Timeout | undefined;
      const stall = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          timedOut = true;
          // Reject first, so the race settles with the timeout and not with the abort it causes.
          reject(new EnvironmentError('E_HUB_TIMEOUT', `${shown}: ${what} stalled (no data for ${timeouts.readMs / 1000} s)`, {
            hint: 'the hub is stalled; try again, set SPHANA_HUB_READ_TIMEOUT_MS, or pass --weights DIR',
          }));
          abort.abort();
        }, timeouts.readMs);
      });
      let next: ReadableStreamReadResult<Uint8Array>;
      try {
        next = await Promise.race([reader.read(), stall]);
      } finally {
        clearTimeout(timer);
      }
      if (next.done) return;
      yield Buffer.from(next.value);
    }
  } finally {
    if (!timedOut) reader.releaseLock();
    else void reader.cancel().catch(() => {});
  }
}
