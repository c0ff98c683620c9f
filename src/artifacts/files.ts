import { createHash } from 'node:crypto';
import { createReadStream, readdirSync, renameSync, statSync, writeFileSync } from 'node:fs';
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

/** Writes `text` to a temporary name beside `path`, then renames: readers never see half a file. */
export function writeFileAtomic(path: string, text: string): void {
  const tmp = join(dirname(path), `.sphana-tmp-${process.pid}-${Date.now()}-${relative(dirname(path), path)}`);
  writeFileSync(tmp, text);
  renameSync(tmp, path);
}
