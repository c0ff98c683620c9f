import { inspectFile } from '../src/onnx/summary.js';
import { DecoderRunner } from '../src/runtime/decoder.js';
import { openSession } from '../src/runtime/onnxruntime.js';

/** `node dist/bench/decode-speed.js MODEL.onnx [threads]`: prefill 16 tokens, then 32 greedy decode steps. */
const [path, threads = '2'] = process.argv.slice(2);
const summary = inspectFile(path);
if (!summary.kvCache) throw new Error(`${path} has no KV cache`);
const session = await openSession(path, { threads: Number(threads) });
const runner = new DecoderRunner(session, summary.kvCache);
const vocab = summary.outputs.find((o) => o.name === 'logits')?.shape?.at(-1) as number;
const prompt = Array.from({ length: 16 }, (_, i) => (i * 7919 + 13) % vocab);
await runner.greedy(prompt, 2); // warm-up
let t = performance.now();
runner.reset();
await runner.step(prompt);
const prefill = (performance.now() - t) / 1000;
t = performance.now();
const out = await runner.greedy(prompt, 33);
const total = (performance.now() - t) / 1000;
process.stdout.write(`${JSON.stringify({ prefillTokensPerSecond: 16 / prefill, decodeTokensPerSecond: 32 / Math.max(1e-9, total - prefill), tokens: out.tokens.length })}\n`);
await session.release();
