import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { COMMIT_SHA, unsafePathReason, unsafeRevisionReason } from '../security/safe-path.js';

/** Where the Hugging Face hub cache is, as huggingface_hub decides it. */
export function hubCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.HF_HUB_CACHE) return env.HF_HUB_CACHE;
  if (env.HF_HOME) return join(env.HF_HOME, 'hub');
  const xdg = env.XDG_CACHE_HOME ?? join(homedir(), '.cache');
  return join(xdg, 'huggingface', 'hub');
}

export function repoFolder(cache: string, hubId: string): string {
  return join(cache, `models--${hubId.replace(/\//g, '--')}`);
}

/** The snapshot folder of `hubId` at `revision` (a branch, tag or commit), if the cache has it. */
export function findSnapshot(cache: string, hubId: string, revision = 'main'): { dir: string; commit: string } | undefined {
  const repo = repoFolder(cache, hubId);
  if (unsafeRevisionReason(revision)) return undefined;
  let commit = revision;
  const ref = join(repo, 'refs', revision);
  if (existsSync(ref)) commit = readFileSync(ref, 'utf8').trim();
  // A ref file is read from disk: only a 40-hex commit (or the revision itself, when it is one) names a snapshot.
  if (!COMMIT_SHA.test(commit) && commit !== revision) return undefined;
  if (unsafePathReason(commit) || commit.includes('/')) return undefined;
  const dir = join(repo, 'snapshots', commit);
  return existsSync(join(dir, 'config.json')) ? { dir, commit } : undefined;
}
