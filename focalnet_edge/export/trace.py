"""torch -> raw ONNX graph: torch.onnx.export traces the graph alone, the weights go to a file from the module's tensors.

torch.onnx.export with the weights holds them three more times at once (their constant-folded
copies, the protobuf it builds, that protobuf's serialized bytes): measured on focalnet-base,
1.08 GB on top of the module's own 336 MB, most of `export`'s peak (5.2x the checkpoint). Here
torch exports the graph alone (`export_params=False`: each weight stays a graph input named as
in the module; nothing is constant-folded), and each weight is then written to the graph's
external data file straight from the module's tensor, one at a time. The folds torch's
constant folding does on weights, the `Transpose` in front of each Linear's `MatMul` and the
`Squeeze` of a 1x1 convolution's weight, are done here as the weight is written (its transposed
or reshaped copy is the initializer), so the raw graph has
the same nodes as torch's folded one and the simplifier sees the graph it always saw.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from ..errors import ArtifactError
from ..folder.contract import InputContract
from ..folder.onnx_io import load_onnx
from ..folder.onnx_write import ExternalData, data_path


def dynamic_axes(contract: InputContract, outputs: list[str], head: str) -> dict[str, dict[int, str]]:
    """torch.onnx's dynamic_axes: batch (unless static), and height/width with a dynamic size."""
    axes: dict[str, dict[int, str]] = {}
    in_axes: dict[int, str] = {0: "batch"} if contract.dynamic_batch else {}
    if contract.dynamic_size:
        h, w = contract.spatial_axes
        in_axes.update({h: "height", w: "width"})
    if in_axes:
        axes[contract.name] = in_axes
    for name in outputs:
        out_axes = {0: "batch"} if contract.dynamic_batch else {}
        if contract.dynamic_size and head in ("features", "reconstruction"):
            out_axes.update({2: f"{name}_height", 3: f"{name}_width"})
        if out_axes:
            axes[name] = out_axes
    return axes


def trace(module: torch.nn.Module, contract: InputContract, opset: int, head: str, x: np.ndarray, path: Path) -> None:
    """torch.onnx.export of `module` to the file `path`, its weights in `path`'s external data file (`path.data`)."""
    outputs = module.output_names
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (torch.from_numpy(x),),
            str(path),
            input_names=[contract.name],
            output_names=outputs,
            dynamic_axes=dynamic_axes(contract, outputs, head) or None,
            opset_version=opset,
            do_constant_folding=False,
            export_params=False,
            dynamo=False,
        )
    model = load_onnx(path)
    tensors = {**dict(module.named_parameters(remove_duplicate=False)), **dict(module.named_buffers(remove_duplicate=False))}
    write_weights(model, tensors, path)
    unknown = [i.name for i in model.graph.input if i.name != contract.name]
    if unknown:
        raise ArtifactError(f"the traced graph takes inputs that are not the module's weights ({', '.join(unknown[:3])}); please report this")
    onnx.save_model(model, str(path))


def _folded_weights(graph: onnx.GraphProto, names: set[str]) -> dict[str, tuple[str, list[onnx.NodeProto]]]:
    """Weights read through a chain of weight-only Transpose/Reshape/Squeeze nodes (a Linear's transpose, a
    1x1 convolution's squeezed weight), each the only reader of the last: the chain's output -> (weight, chain)."""
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    constants = {n.output[0] for n in graph.node if n.op_type == "Constant"}
    outputs = {o.name for o in graph.output}
    folded = {}
    for name in names:
        current, chain = name, []
        while current not in outputs and len(readers.get(current, [])) == 1:
            node = readers[current][0]
            if node.input[0] != current or not (node.op_type == "Transpose" or (
                    node.op_type in ("Reshape", "Squeeze") and node.input[1:2] and node.input[1] in constants)):
                break
            chain.append(node)
            current = node.output[0]
        if chain:
            folded[current] = (name, chain)
    return folded


def _apply(value: torch.Tensor, chain: list[onnx.NodeProto], constants: dict[str, np.ndarray]) -> torch.Tensor:
    """The weight as the chain of Transpose/Reshape nodes leaves it."""
    for node in chain:
        if node.op_type == "Transpose":
            perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
            value = value.permute(*(perm if perm is not None else reversed(range(value.dim()))))
        elif node.op_type == "Squeeze":
            value = value.squeeze(tuple(int(a) for a in np.atleast_1d(constants[node.input[1]])))
        else:  # Reshape: a 0 keeps that dimension, a -1 is inferred
            shape = [value.shape[i] if d == 0 else int(d) for i, d in enumerate(constants[node.input[1]])]
            value = value.reshape(shape)
    return value.contiguous()


def write_weights(model: onnx.ModelProto, tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Turn the graph inputs of `model` named in `tensors` into initializers, their bytes written to `path`'s data file.

    One tensor in memory at a time (the module's own tensors are read, never copied whole);
    a weight read only through a chain of Transpose/Reshape/Squeeze nodes is written as that chain leaves it, in its place.
    """
    from onnx import numpy_helper

    graph = model.graph
    weights = [i.name for i in graph.input if i.name in tensors]
    inputs = [i for i in graph.input if i.name not in tensors]
    del graph.input[:]
    graph.input.extend(inputs)
    folded = _folded_weights(graph, set(weights))
    gone = {id(n) for _, chain in folded.values() for n in chain}
    kept = [n for n in graph.node if id(n) not in gone]
    read = {name for n in kept for name in n.input}
    constants = {n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in graph.node
                 if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"}
    kept = [n for n in kept if not (n.op_type == "Constant" and n.output[0] not in read and n.output[0] in constants)]
    del graph.node[:]
    graph.node.extend(kept)
    data = ExternalData(path.parent, data_path(path).name)
    by_weight = {name: (out, chain) for out, (name, chain) in folded.items()}
    for name in weights:
        value = tensors[name].detach()
        if name in by_weight:
            out, chain = by_weight[name]
            value = _apply(value, chain, constants)
            name = out
        t = numpy_helper.from_array(value.numpy(), name)
        data.add(t)  # its bytes go to the file now; the graph keeps where they are
        graph.initializer.append(t)
