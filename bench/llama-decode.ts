import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

/**
 * `node dist/bench/llama-decode.js NODE_MODULES GGUF THREADS IDS_JSON STEPS`: llama.cpp (node-llama-cpp,
 * CPU build, installed in the bench cache, not a dependency of sphana) on the same loop as
 * bench/decode-speed.ts: prefill the ids (median of 3, cache cleared each time), then STEPS greedy
 * decode steps. Prints one JSON line.
 */
const [modules, gguf, threads = '2', idsJson, stepsArg = '32'] = process.argv.slice(2);
const entry = join(modules, 'node-llama-cpp/dist/index.js');
if (!existsSync(entry)) throw new Error(`node-llama-cpp is not installed in ${modules}`);
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const lib: any = await import(pathToFileURL(entry).href);
const llama = await lib.getLlama({ gpu: false, build: 'never', logLevel: 'error' });
const model = await llama.loadModel({ modelPath: gguf, gpuLayers: 0 });
const ids: number[] = JSON.parse(idsJson);
const steps = Number(stepsArg);
const context = await model.createContext({ contextSize: 512, threads: Number(threads), batchSize: 512 });
const sequence = context.getSequence();
const prefills: number[] = [];
let decode = 0;
let generated = 0;
for (let round = 0; round < 3; round++) {
  await sequence.clearHistory();
  const t = performance.now();
  let first = true;
  let td = 0;
  generated = 0;
  for await (const _token of sequence.evaluate(ids, { temperature: 0 })) {
    if (first) { prefills.push((performance.now() - t) / 1000); first = false; td = performance.now(); if (round < 2) break; continue; }
    if (++generated >= steps) break;
  }
  if (round === 2) decode = (performance.now() - td) / 1000;
}
prefills.sort((a, b) => a - b);
process.stdout.write(`${JSON.stringify({ prefillTokensPerSecond: ids.length / prefills[1], decodeTokensPerSecond: generated / decode, peakRssBytes: process.resourceUsage().maxRSS * 1024, threads: Number(threads), gpu: llama.gpu, buildType: llama.buildType })}\n`);
await context.dispose();
await model.dispose();
await llama.dispose();
