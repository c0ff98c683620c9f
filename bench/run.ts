import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchExport, benchGemma2, benchGemma3 } from './export.js';
import { benchGguf } from './gguf.js';
import { benchFuzz } from './fuzz.js';
import { benchInspect } from './inspect.js';
import { benchInt8 } from './int8.js';
import { benchStartup } from './startup.js';
import { benchPeers } from './peers.js';
import { benchLlamaInit } from './llama-init.js';
import { ensureBridgeEnvironment } from '../src/python/environment.js';
import { machine } from './measure.js';

/**
 * `npm run bench [-- SECTION...]`: speed and memory figures, printed and written to
 * bench/results/<section>.md. Large models are built once into $SPHANA_BENCH_CACHE
 * (default ~/.cache/sphana/bench).
 */
const root = fileURLToPath(new URL('../../', import.meta.url));
const cache = process.env.SPHANA_BENCH_CACHE ?? join(process.env.HOME ?? '/tmp', '.cache/sphana/bench');
const python = process.env.SPHANA_BENCH_PYTHON ?? (await ensureBridgeEnvironment()).python;
process.env.SPHANA_BENCH_PYTHON = python;
const bin = join(root, 'bin/sphana.js');

const sections: Record<string, () => Promise<string[]>> = {
  inspect: () => benchInspect(cache, python, bin),
  export: () => benchExport(cache, bin),
  gemma2: () => benchGemma2(cache, bin),
  gemma3: () => benchGemma3(cache, bin),
  gguf: () => benchGguf(cache, bin, python, root),
  fuzz: () => benchFuzz(root, python, bin),
  int8: () => benchInt8(cache, python),
  startup: () => benchStartup(cache, python, bin),
  peers: () => benchPeers(cache, bin, python),
  'llama-init': () => benchLlamaInit(cache, bin, python),
};

const wanted = process.argv.slice(2).length ? process.argv.slice(2) : ['inspect', 'export'];
mkdirSync(join(root, 'bench/results'), { recursive: true });
for (const name of wanted) {
  const section = sections[name];
  if (!section) throw new Error(`unknown section ${name}; known: ${Object.keys(sections).join(', ')}`);
  const rows = await section();
  const text = [`# ${name}`, '', `${new Date().toISOString().slice(0, 10)}, ${machine()}`, '', ...rows, ''].join('\n');
  process.stdout.write(`${text}\n`);
  writeFileSync(join(root, 'bench/results', `${name}.md`), text);
}
