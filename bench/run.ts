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
import { benchLlamaInit, ensureLlamaInitFolder } from './llama-init.js';
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
  // Issue 9's full-size target: sphana's export → quantize int8 (no verify) beside the builder's int8 on the
  // full-size Llama-3.2-1B (transformers-initialised weights), wall time and per-step peak RSS.
  'peers-llama': () => {
    const { hf } = ensureLlamaInitFolder(cache, python, 'llama-3.2-1b');
    Object.assign(process.env, {
      SPHANA_PEERS_HF: hf, SPHANA_PEERS_GGUF: join(hf, 'none.gguf'), SPHANA_PEERS_TOOLS: 'sphana,genai',
      SPHANA_PEERS_SPHANA: 'ort', SPHANA_PEERS_GENAI_PRECISIONS: 'int8', SPHANA_PEERS_SCORE: '0', SPHANA_PEERS_INT4: '0', SPHANA_PEERS_WORK: 'peers-llama',
      SPHANA_PEERS_LABEL: 'full-size Llama-3.2-1B architecture, transformers-initialised weights (bench/make_llama_init.py)',
    });
    return benchPeers(cache, bin, python);
  },
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
