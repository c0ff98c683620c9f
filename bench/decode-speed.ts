import { inspectFile } from '../src/onnx/summary.js';
import { argmax, DecoderRunner } from '../src/runtime/decoder.js';
import { openSession } from '../src/runtime/onnxruntime.js';

/**
 * `node dist/bench/decode-speed.js MODEL.onnx THREADS IDS_JSON STEPS`: the loop bench/ort_decode.py runs
 * (prefill from an empty cache, median of 3; then STEPS greedy decode steps feeding the presents back),
 * with sphana's DecoderRunner on onnxruntime-node, in a process that does nothing else.
 */
const [path, threads = '2', idsJson, stepsArg = '32'] = process.argv.slice(2);
const summary = inspectFile(path);
if (!summary.kvCache) throw new Error(`${path} has no KV cache`);
const vocab = summary.outputs.find((o) => o.name === 'logits')?.shape?.at(-1) as number;
const ids: number[] = idsJson ? JSON.parse(idsJson) : Array.from({ length: 64 }, (_, i) => (i * 7919 + 13) % vocab);
const steps = Number(stepsArg);
const session = await openSession(path, { threads: Number(threads) });
const runner = new DecoderRunner(session, summary.kvCache);
const prefills: number[] = [];
let last = new Float32Array(0);
for (let i = 0; i < 3; i++) {
  runner.reset();
  const t = performance.now();
  const r = await runner.step(ids);
  prefills.push((performance.now() - t) / 1000);
  last = r.logits.slice((r.positions - 1) * r.vocab);
}
prefills.sort((a, b) => a - b);
const t = performance.now();
for (let i = 0; i < steps; i++) {
  const r = await runner.step([argmax(last)]);
  last = r.logits.slice((r.positions - 1) * r.vocab);
}
const decode = (performance.now() - t) / 1000;
process.stdout.write(`${JSON.stringify({ prefillTokensPerSecond: ids.length / prefills[1], decodeTokensPerSecond: steps / decode, peakRssBytes: process.resourceUsage().maxRSS * 1024 })}\n`);
await session.release();
