"""`<name>_image` of `focalnet-edge serve`: a model of Triton's own Python backend, beside PyTriton's.

PyTriton turns every exception of an inference function into one error for the whole batch,
sent as HTTP 500 with the formatted traceback as its text; it has no route for a client's bad
input. Triton's Python backend has one: a response per request, carrying an error code. So the
image model lives in a small model repository of its own (`write_repository`), which the
tritonserver that PyTriton starts loads at start-up (`TritonConfig(model_repository=...)`):

- each request's images are decoded with the project's one image loader and the contract's
  `prepare` (`decode`); bytes that are not an image answer that request alone with
  INVALID_ARG (HTTP 400, gRPC INVALID_ARGUMENT) and the loader's one-line message;
- the prepared batch goes to the `<name>` tensor model through Triton's BLS, in chunks of at
  most its max batch: the runner stays the one PyTriton serves, batched with other clients.

The backend's stub imports this module from the model repository's `model.py`, from the folder
`serve` imported it from; numpy and Pillow come from the environment `serve` runs in, as
PyTriton's own models' packages do.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..folder.contract import InputContract
from ..errors import FocalNetEdgeError, InputError
from .triton import TRITON_TYPES

IMAGE_INPUT = "image"
PARAMS = "image_model.json"  #: beside model.py: the contract, the tensor model and its outputs
#: the repository's model.py: this module, imported from where `serve` imported it (the stub does not see
#: PYTHONPATH: measured, a development checkout on PYTHONPATH is not found from another working directory)
MODEL_PY = """import sys
sys.path.insert(0, {root!r})
from focalnet_edge.deploy.image_model import TritonPythonModel  # noqa: E402,F401  (focalnet-edge serve)
"""


def decode(contract: InputContract, items: np.ndarray) -> np.ndarray:
    """One request's encoded images (a BYTES tensor) -> the tensor model's input batch, or one `InputError`."""
    from ..model.preprocessing import to_pil

    images = []
    for i, item in enumerate(np.asarray(items, dtype=object).reshape(-1)):
        try:
            images.append(to_pil(item if isinstance(item, bytes) else bytes(item)))
        except FocalNetEdgeError as e:
            raise InputError(f"image {i} of the request: {e}") from None
    if not images:
        raise InputError("the request holds no image")
    return contract.prepare(images)


def write_repository(root: str | os.PathLike, name: str, tensor_model: str, contract: InputContract, max_batch: int,
                     outputs: dict[str, tuple[np.dtype, tuple[int, ...]]], instances: int) -> Path:
    """A Triton model repository under `root` holding the image model `name` (version 1); its path.

    `outputs`: the tensor model's outputs, name -> (dtype, dims after the batch; -1 where they vary).
    """
    model = Path(root) / name
    (model / "1").mkdir(parents=True)
    out = ",\n".join(f'  {{ name: "{k}" data_type: {TRITON_TYPES[np.dtype(dtype).name]} dims: [ {", ".join(map(str, (-1, *dims)))} ] }}'
                      for k, (dtype, dims) in outputs.items())
    (model / "config.pbtxt").write_text(
        f'name: "{name}"\nbackend: "python"\nmax_batch_size: 0\n'
        f'input [\n  {{ name: "{IMAGE_INPUT}" data_type: TYPE_STRING dims: [ -1 ] }}\n]\n'
        f"output [\n{out}\n]\n"
        f"instance_group [ {{ count: {instances} kind: KIND_CPU }} ]\n"
    )
    (model / "1" / "model.py").write_text(MODEL_PY.format(root=str(Path(__file__).resolve().parents[2])))
    (model / "1" / PARAMS).write_text(json.dumps({
        "contract": json.loads(contract.to_json()), "tensor_model": tensor_model, "max_batch": max_batch, "outputs": list(outputs),
    }))
    return Path(root)


class TritonPythonModel:
    """The Python backend's model class: run in the backend's stub process, one per instance."""

    def initialize(self, args: dict) -> None:
        params = json.loads((Path(args["model_repository"]) / str(args["model_version"]) / PARAMS).read_text())
        self.contract = InputContract.from_dict(params["contract"])
        self.tensor_model = params["tensor_model"]
        self.max_batch = int(params["max_batch"])
        self.outputs = list(params["outputs"])

    def execute(self, requests: list) -> list:
        return [self._answer(r) for r in requests]

    def _answer(self, request):
        import triton_python_backend_utils as pb_utils

        try:
            batch = decode(self.contract, pb_utils.get_input_tensor_by_name(request, IMAGE_INPUT).as_numpy())
        except InputError as e:
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(str(e), pb_utils.TritonError.INVALID_ARG))
        parts: dict[str, list[np.ndarray]] = {k: [] for k in self.outputs}
        for start in range(0, len(batch), self.max_batch):
            answer = pb_utils.InferenceRequest(
                model_name=self.tensor_model, requested_output_names=self.outputs,
                inputs=[pb_utils.Tensor(self.contract.name, np.ascontiguousarray(batch[start:start + self.max_batch]))],
            ).exec()
            if answer.has_error():
                message = answer.error().message().strip().splitlines()
                return pb_utils.InferenceResponse(error=pb_utils.TritonError(
                    f"model {self.tensor_model!r} failed: {message[-1] if message else 'no message'}"))
            for k in self.outputs:
                parts[k].append(pb_utils.get_output_tensor_by_name(answer, k).as_numpy())
        return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(k, np.concatenate(v)) for k, v in parts.items()])
