/**
 * Loaded with `node --import` by tests: every copyFileSync / writeFileSync whose destination
 * contains SPHANA_TEST_ENOSPC_IN fails as a full disk does (ENOSPC), so the CLI's handling of
 * a full disk is tested without filling one.
 */
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';

const marker = process.env.SPHANA_TEST_ENOSPC_IN;
if (marker) {
  const full = (syscall: string, path: string, dest?: string) => Object.assign(new Error(`ENOSPC: no space left on device, ${syscall} '${dest ?? path}'`), {
    errno: -28, code: 'ENOSPC', syscall, path, ...(dest ? { dest } : {}),
  });
  const copy = fs.copyFileSync;
  fs.copyFileSync = ((src: fs.PathLike, dest: fs.PathLike, mode?: number) => {
    if (String(dest).includes(marker)) throw full('copyfile', String(src), String(dest));
    return copy(src, dest, mode);
  }) as typeof fs.copyFileSync;
  syncBuiltinESMExports();
}
