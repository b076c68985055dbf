"""The DeepStream ONNX: the folder's graph with the normalisation in front (a Mul and an Add) and/or
a Softmax behind (nvinfer's classifier parser reads probabilities), written with the onnx library."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ...errors import ArtifactError
from .plan import Plan, graph_facts


def write_onnx(source: Path, path: Path, plan: Plan) -> None:
    """The folder's ONNX, with normalisation in front and/or a Softmax behind (onnx library only)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from ...folder.onnx_io import load_onnx, save_onnx, set_metadata

    model = load_onnx(source)
    graph = model.graph
    contract = plan.contract
    if plan.normalisation.prepend is not None:
        (old_input,) = [i for i in graph.input if i.name == contract.name]
        frames = onnx.ValueInfoProto()
        frames.CopyFrom(old_input)
        frames.name = "frames"
        mul, add = plan.normalisation.prepend
        graph.initializer.extend([
            numpy_helper.from_array(np.asarray(mul, np.float32).reshape(1, 3, 1, 1), "deepstream_scale"),
            numpy_helper.from_array(np.asarray(add, np.float32).reshape(1, 3, 1, 1), "deepstream_shift"),
        ])
        nodes = [
            helper.make_node("Mul", ["frames", "deepstream_scale"], ["frames_scaled"], name="deepstream_normalise_mul"),
            helper.make_node("Add", ["frames_scaled", "deepstream_shift"], [contract.name], name="deepstream_normalise_add"),
        ]
        kept = [i for i in graph.input if i.name != contract.name]
        del graph.input[:]
        graph.input.extend([frames, *kept])
        for n in reversed(nodes):
            graph.node.insert(0, n)
    if plan.softmax:
        (out,) = list(graph.output)
        x = out.name
        if out.type.tensor_type.elem_type != TensorProto.FLOAT:
            graph.node.append(helper.make_node("Cast", [x], [f"{x}_fp32"], to=TensorProto.FLOAT, name="deepstream_cast"))
            x = f"{x}_fp32"
        graph.node.append(helper.make_node("Softmax", [x], ["probs"], axis=-1, name="deepstream_softmax"))
        probs = onnx.ValueInfoProto()
        probs.CopyFrom(out)
        probs.name = "probs"
        probs.type.tensor_type.elem_type = TensorProto.FLOAT
        del graph.output[:]
        graph.output.extend([probs])
    new_contract = json.loads(contract.to_json())
    if plan.normalisation.prepend is not None:
        new_contract.update(name="frames", fused_preprocess=True)
    facts = graph_facts(plan)
    set_metadata(model, {"head": facts["head"], "outputs": facts["outputs"], "input": new_contract, "deepstream": facts})
    save_onnx(model, path)  # sorted there; a large graph keeps its weights beside it (path.data), which nvinfer's parser reads
    try:
        onnx.checker.check_model(str(path))  # the file: any size, no second copy in memory
    except onnx.checker.ValidationError as e:
        raise ArtifactError(f"{source}: the DeepStream graph derived from it is not valid ONNX ({e})") from None
