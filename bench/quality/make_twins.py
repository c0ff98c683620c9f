"""Usage: python make_twins.py [NAME ...] (default: all). Quantized twins of the real SmolLM2-135M-Instruct fp32 export, correct and broken on purpose,
made with onnxruntime's own tools, to calibrate sphana's quality gates. Scratch, not shipped."""
import os, sys, time, copy
import numpy as np, onnx
from onnx import numpy_helper
from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer, DefaultWeightOnlyQuantConfig
from onnxruntime.quantization import quantize_dynamic, QuantType

SRC = '/work/scratch/smollm2-export/0.1.0/onnx/llm_generator.onnx'
OUT = '/work/scratch/gates-twins'
only = set(sys.argv[1:])

def load_untied():
    """fp32 with the LM head as its own [hidden, vocab] initializer, so MatMulNBits quantizes it too."""
    m = onnx.load(SRC)
    g = m.graph
    inits = {i.name: i for i in g.initializer}
    prod = {o: n for n in g.node for o in n.output}
    for n in g.node:
        if n.op_type == 'MatMul' and n.input[1] in prod and prod[n.input[1]].op_type == 'Transpose' and prod[n.input[1]].input[0] in inits:
            w = numpy_helper.to_array(inits[prod[n.input[1]].input[0]])
            t = numpy_helper.from_array(np.ascontiguousarray(w.T), 'lm_head_T')
            g.initializer.append(t)
            n.input[1] = 'lm_head_T'
    return m

def weights(m):
    return {i.name: i for i in m.graph.initializer}

def save(m, name):
    path = f'{OUT}/{name}.onnx'
    if os.path.exists(path + '.data'): os.remove(path + '.data')
    onnx.save(m, path, save_as_external_data=True, all_tensors_to_one_file=True, location=f'{name}.onnx.data', size_threshold=1024)
    print('wrote', name, flush=True)

def nbits(m, bits, block, sym, level, name):
    if only and name not in only: return
    t = time.time()
    cfg = DefaultWeightOnlyQuantConfig(block_size=block, is_symmetric=sym, accuracy_level=level, bits=bits)
    q = MatMulNBitsQuantizer(copy.deepcopy(m), bits=bits, block_size=block, is_symmetric=sym, accuracy_level=level, algo_config=cfg)
    q.process()
    save(q.model.model, name)
    print(name, f'{time.time()-t:.0f}s', flush=True)

def matmul_weights(m):
    """Names of the [in, out] weights of decoder MatMuls (not the LM head)."""
    inits = weights(m)
    return [n.input[1] for n in m.graph.node if n.op_type == 'MatMul' and n.input[1] in inits and n.input[1] != 'lm_head_T']

def broken(m, kind, rng):
    m = copy.deepcopy(m)
    inits = weights(m)
    names = matmul_weights(m)  # 7 per layer, in layer order: q, k, v, o, gate, up, down
    def set_(n, a): inits[n].CopyFrom(numpy_helper.from_array(a.astype(np.float32), n))
    def get(n): return numpy_helper.to_array(inits[n])
    if kind.startswith('noise'):
        k = float(kind[5:])
        for n in names:
            w = get(n); set_(n, w + rng.standard_normal(w.shape).astype(np.float32) * w.std() * k)
    elif kind == 'zero-layer':
        for n in names[15*7:16*7]: set_(n, np.zeros_like(get(n)))
    elif kind == 'zero-mlp-last':
        for n in names[29*7+4:30*7]: set_(n, np.zeros_like(get(n)))
    elif kind == 'flip-down':
        n = names[10*7+6]; set_(n, -get(n))
    elif kind == 'swap-kv':
        k, v = names[3*7+1], names[3*7+2]; a, b = get(k), get(v); set_(k, b); set_(v, a)
    elif kind == 'zero-head-rows':
        w = get('lm_head_T').copy(); w[:, : w.shape[1] // 2] = 0; set_('lm_head_T', w)
    elif kind == 'scale-o':
        for n in names[3::7]: set_(n, get(n) * 1.5)
    else: raise ValueError(kind)
    return m

if __name__ == '__main__':
    base = load_untied()
    if not only or 'fp32-untied' in only: save(base, 'fp32-untied')
    nbits(base, 8, 32, False, 4, 'q8-b32-asym-l4')
    nbits(base, 8, 32, True, 4, 'q8-b32-sym-l4')
    nbits(base, 8, 32, False, 0, 'q8-b32-asym-l0')
    nbits(base, 8, 128, True, 4, 'q8-b128-sym-l4')
    nbits(base, 4, 32, True, 4, 'q4-b32-sym-l4')
    nbits(base, 4, 32, False, 4, 'q4-b32-asym-l4')
    nbits(base, 4, 64, False, 4, 'q4-b64-asym-l4')
    nbits(base, 4, 128, False, 4, 'q4-b128-asym-l4')
    nbits(base, 4, 128, True, 0, 'q4-b128-sym-l0')
    if not only or 'dyn-int8' in only:
        t = time.time()
        quantize_dynamic(f'{OUT}/fp32-untied.onnx', f'{OUT}/dyn-int8.onnx', weight_type=QuantType.QInt8, op_types_to_quantize=['MatMul'], use_external_data_format=True)
        print('dyn-int8', f'{time.time()-t:.0f}s', flush=True)
    rng = np.random.default_rng(0)
    for kind in ['noise0.1', 'noise0.3', 'noise1', 'zero-layer', 'zero-mlp-last', 'flip-down', 'swap-kv', 'zero-head-rows', 'scale-o']:
        name = f'broken-{kind}'
        if only and name not in only: continue
        nbits(broken(base, kind, rng), 8, 32, True, 4, name)
