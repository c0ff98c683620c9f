import { readFileSync } from 'node:fs';

/** sphana's own version, from package.json. */
export function sphanaVersion(): string {
  return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
}
