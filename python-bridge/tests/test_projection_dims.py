"""A constant MatMul weight with a side under 16 (the rotary frequencies onnxruntime's fusions leave as
MatMul(positions, inv_freq[1, d/2])) is not a projection: not quantized, not reported as a float weight left."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from sphana_bridge import graphutil


def _model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((1, 8)).astype(np.float32), "inv_freq"),
        numpy_helper.from_array(rng.standard_normal((32, 48)).astype(np.float32), "w_proj"),
    ]
    nodes = [
        helper.make_node("MatMul", ["pos", "inv_freq"], ["angles"], name="rope"),
        helper.make_node("MatMul", ["x", "w_proj"], ["y"], name="proj"),
    ]
    g = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("pos", TensorProto.FLOAT, [4, 1]), helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 32])],
        [helper.make_tensor_value_info("angles", TensorProto.FLOAT, [4, 8]), helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 48])],
        initializer=inits,
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])


def test_small_side_weight_is_not_quantized_nor_reported():
    gi = graphutil.GraphIndex.build(_model())
    notes: list[str] = []
    found = graphutil.quantizable_matmuls(gi, notes)
    assert sorted(mw.weight for mw in found.values()) == ["w_proj"]
    assert any("inv_freq" in n and "not a projection" in n for n in notes)
    assert [c.weight for c in graphutil.const_weight_matmuls(gi)] == ["w_proj"]


def test_threshold_is_matmulnbits_smallest_block():
    assert graphutil.MIN_PROJECTION_DIM == 16
