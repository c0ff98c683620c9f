import { createHash } from 'node:crypto';
import { closeSync, rmSync, createReadStream, fsyncSync, openSync, readdirSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { runTag } from '../cleanup.js';
import { dirname, join, relative, sep } from 'node:path';

/** sha256 of a file, streamed (flat memory for multi-GB files). */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 4 << 20 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Every regular file below `dir`, relative, with forward slashes, sorted; hidden (temporary, staging) entries skipped. */
export function listArtifactFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      if (entry.name.startsWith('.')) continue;
      const path = join(d, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.isFile()) out.push(relative(dir, path).split(sep).join('/'));
    }
  };
  walk(dir);
  return out.sort();
}

export function fileBytes(path: string): number {
  return statSync(path).size;
}

/** Flushes a file (or a folder's entries) to the disk. */
export function fsyncPath(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } catch (error) {
    // Some file systems cannot fsync a folder (EINVAL); the data itself was flushed.
    if (!['EINVAL', 'ENOTSUP', 'EISDIR'].includes((error as NodeJS.ErrnoException).code ?? '')) throw error;
  } finally {
    closeSync(fd);
  }
}

/** Renames `from` to `to` after flushing `from` (a file, or a folder and every file in it), then flushes the parent folder. */
export function renameDurable(from: string, to: string): void {
  fsyncTree(from);
  renameSync(from, to);
  fsyncPath(dirname(to));
}

function fsyncTree(path: string): void {
  if (statSync(path).isDirectory()) {
    for (const entry of readdirSync(path)) fsyncTree(join(path, entry));
  }
  fsyncPath(path);
}

/** Writes `text` to a temporary name (unique per run) beside `path`, fsyncs it, then renames: readers never see half a file. */
export function writeFileAtomic(path: string, text: string): void {
  const tmp = join(dirname(path), `.sphana-tmp-${runTag()}-${relative(dirname(path), path)}`);
  try {
    writeFileSync(tmp, text);
    renameDurable(tmp, path);
  } catch (error) {
    rmQuiet(tmp);
    throw error;
  }
}

function rmQuiet(path: string): void {
  try {
    rmSync(path, { force: true });
  } catch {
    // nothing to remove
  }
}
