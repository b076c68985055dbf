"""torch -> raw ONNX graph: torch.onnx.export traces the graph alone, the weights go to a file from the module's tensors.

torch.onnx.export with the weights holds them three more times at once (their constant-folded
copies, the protobuf it builds, that protobuf's serialized bytes): measured on focalnet-base,
1.08 GB on top of the module's own 336 MB, most of `export`'s peak (5.2x the checkpoint). Here
torch exports the graph alone (`export_params=False`: each weight stays a graph input named as
in the module; nothing is constant-folded), and each weight is then written to the graph's
external data file straight from the module's tensor, one at a time. The one fold torch's
constant folding does on weights, the `Transpose` in front of each Linear's `MatMul`, is done
here as the weight is written (its transposed copy is the initializer), so the raw graph has
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
    model = onnx.load(str(path))
    tensors = {**dict(module.named_parameters(remove_duplicate=False)), **dict(module.named_buffers(remove_duplicate=False))}
    write_weights(model, tensors, path)
    unknown = [i.name for i in model.graph.input if i.name != contract.name]
    if unknown:
        raise ArtifactError(f"the traced graph takes inputs that are not the module's weights ({', '.join(unknown[:3])}); please report this")
    onnx.save_model(model, str(path))


def _transposed_weights(graph: onnx.GraphProto, names: set[str]) -> dict[str, tuple[str, list[int] | None]]:
    """Weights read by one Transpose node and nothing else: that node's output -> (weight, perm)."""
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    folded = {}
    for name in names:
        users = readers.get(name, [])
        if len(users) == 1 and users[0].op_type == "Transpose" and name not in outputs:
            perm = next((list(a.ints) for a in users[0].attribute if a.name == "perm"), None)
            folded[users[0].output[0]] = (name, perm)
    return folded


def write_weights(model: onnx.ModelProto, tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Turn the graph inputs of `model` named in `tensors` into initializers, their bytes written to `path`'s data file.

    One tensor in memory at a time (the module's own tensors are read, never copied whole);
    a weight read only by a Transpose is written transposed in that node's place.
    """
    from onnx import numpy_helper

    graph = model.graph
    weights = [i.name for i in graph.input if i.name in tensors]
    inputs = [i for i in graph.input if i.name not in tensors]
    del graph.input[:]
    graph.input.extend(inputs)
    folded = _transposed_weights(graph, set(weights))
    kept = [n for n in graph.node if not (n.op_type == "Transpose" and n.output[0] in folded)]
    del graph.node[:]
    graph.node.extend(kept)
    data = ExternalData(path.parent, data_path(path).name)
    by_weight = {name: (out, perm) for out, (name, perm) in folded.items()}
    for name in weights:
        value = tensors[name].detach()
        if name in by_weight:
            out, perm = by_weight[name]
            value = value.permute(*(perm if perm is not None else reversed(range(value.dim())))).contiguous()
            name = out
        t = numpy_helper.from_array(value.numpy(), name)
        data.add(t)  # its bytes go to the file now; the graph keeps where they are
        graph.initializer.append(t)
