// Runs the shipped corpus through fp32 and each twin (teacher-forced), with the shipped metrics module.
import { readFileSync, existsSync, appendFileSync } from 'node:fs';
const D = '/work/wt/gates/dist/src';
const { Tokenizer } = await import('/work/wt/gates/node_modules/@huggingface/tokenizers/dist/tokenizers.mjs').catch(() => import('@huggingface/tokenizers'));
const { CORPUS } = await import(`${D}/quality/corpus.js`);
const { AgreementAccumulator } = await import(`${D}/runtime/metrics.js`);
const { DecoderRunner, argmax } = await import(`${D}/runtime/decoder.js`);
const { openSession } = await import(`${D}/runtime/onnxruntime.js`);
const { inspectFile } = await import(`${D}/onnx/summary.js`);
const tokDir = process.env.TOKDIR ?? '/work/scratch/smollm2-export/0.1.0/onnx';
const ref = process.env.REF ?? '/work/scratch/smollm2-export/0.1.0/onnx/llm_generator.onnx';
const bos = Number(process.env.BOS ?? 1);
const t = new Tokenizer(JSON.parse(readFileSync(`${tokDir}/tokenizer.json`, 'utf8')), JSON.parse(readFileSync(`${tokDir}/tokenizer_config.json`, 'utf8')));
const segs = CORPUS.map((s) => { const ids = t.encode(s.text, { add_special_tokens: true }).ids; return ids[0] === bos ? ids : [bos, ...ids]; });
const out = process.env.OUT ?? '/work/scratch/gates-twins/results.jsonl';
async function logitsOf(path) {
  const summary = inspectFile(path);
  const s = await openSession(path, { threads: 2 });
  try {
    const r = new DecoderRunner(s, summary.kvCache);
    const rows = [];
    for (const ids of segs) { r.reset(); const st = await r.step(ids); rows.push({ logits: Float32Array.from(st.logits), vocab: st.vocab }); }
    return { rows, ops: summary.quantization.quantizedOps };
  } finally { await s.release(); }
}
const t0 = performance.now();
const base = await logitsOf(ref);
console.error('fp32 logits', ((performance.now() - t0) / 1000).toFixed(1), 's', segs.map((s) => s.length));
for (const name of process.argv.slice(2)) {
  const path = name.endsWith('.onnx') ? name : `/work/scratch/gates-twins/${name}.onnx`;
  if (!name.endsWith('.onnx')) { while (!readFileSync('/work/scratch/gates-twins/make.log', 'utf8').includes(`wrote ${name}\n`)) await new Promise((r) => setTimeout(r, 5000)); }
  if (!existsSync(path)) { console.error('missing', path); continue; }
  const t1 = performance.now();
  const cand = await logitsOf(path);
  const acc = {};
  for (const eps of [0, 0.1, 0.25, 0.5, 1.0]) acc[eps] = new AgreementAccumulator(eps);
  const gaps = []; const perSeg = [];
  for (const [i, ids] of segs.entries()) {
    const a = base.rows[i].logits, b = cand.rows[i].logits, v = base.rows[i].vocab;
    for (const e of Object.values(acc)) e.add(a, b, v, ids);
    const seg = new AgreementAccumulator(0.5).add(a, b, v, ids).result();
    perSeg.push({ name: CORPUS[i].name, top1: +seg.top1Agreement.toFixed(3), nt: +seg.nearTieTop1.toFixed(3), kl: +seg.meanKl.toPrecision(3) });
    for (let p = 0; p < ids.length; p++) {
      const ra = a.subarray(p * v, (p + 1) * v), rb = b.subarray(p * v, (p + 1) * v);
      const ta = argmax(ra), tb = argmax(rb);
      // fp32's own top-2 margin at every position, and fp32's gap to the candidate's pick at disagreements
      let second = -Infinity; for (let j = 0; j < v; j++) if (j !== ta && ra[j] > second) second = ra[j];
      if (ta !== tb) gaps.push({ gap: +(ra[ta] - ra[tb]).toFixed(3), margin: +(ra[ta] - second).toFixed(3) });
    }
  }
  const r = acc[0.5].result();
  const row = { name, seconds: +((performance.now() - t1) / 1000).toFixed(1), ops: cand.ops, ...r,
    nearTie: Object.fromEntries(Object.entries(acc).map(([e, x]) => [e, +x.result().nearTieTop1.toFixed(4)])),
    gaps: gaps.map((g) => g.gap).sort((x, y) => x - y), perSeg };
  appendFileSync(out, JSON.stringify(row) + '\n');
  console.log(name, 'top1', r.top1Agreement.toFixed(3), 'nt0.5', r.nearTieTop1.toFixed(3), 'KL', r.meanKl.toPrecision(3), 'maxKL', r.maxKl.toPrecision(3), 'cos', r.meanCosine.toFixed(4), 'ppl', r.referencePerplexity.toFixed(2), r.candidatePerplexity.toFixed(2), 'nt', JSON.stringify(row.nearTie), 'gaps', JSON.stringify(row.gaps.slice(0, 40)));
}
