"""Image preprocessing against transformers' image processor (the PIL one: no torchvision here)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from focalnet_edge.errors import InputError
from focalnet_edge.model import ImageSpec
from focalnet_edge.model.preprocessing import to_pil

transformers = pytest.importorskip("transformers")

CONFIG = {
    "do_resize": True, "size": {"shortest_edge": 256}, "resample": 2, "do_center_crop": True,
    "crop_size": {"height": 224, "width": 224}, "do_normalize": True, "image_mean": [0.485, 0.456, 0.406],
    "image_std": [0.229, 0.224, 0.225], "do_rescale": True, "rescale_factor": 1 / 255,
}


def _processor(config):
    cls = getattr(transformers, "BitImageProcessorPil", None) or transformers.BitImageProcessor
    return cls(**config)


@pytest.mark.parametrize("size", [(640, 480), (300, 500), (256, 256), (225, 601), (100, 90)])
@pytest.mark.parametrize("resample", [2, 3])
def test_same_pixel_values_as_transformers(size, resample):
    config = dict(CONFIG, resample=resample)
    image = Image.fromarray(np.random.default_rng(sum(size)).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    expected = _processor(config)(image, return_tensors="np")["pixel_values"][0]
    got = ImageSpec.from_preprocessor_config(config).preprocess(image)
    assert got.shape == expected.shape == (3, 224, 224)
    assert np.abs(got - expected).max() <= 1e-5


def test_frames_paths_and_pil_images_agree(tmp_path):
    frame = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    Image.fromarray(frame).save(tmp_path / "f.png")
    spec = ImageSpec.from_preprocessor_config(CONFIG)
    a, b, c = spec.preprocess(frame), spec.preprocess(tmp_path / "f.png"), spec.preprocess(Image.fromarray(frame))
    assert np.array_equal(a, b) and np.array_equal(a, c)


def test_bad_images_are_clear_errors(tmp_path):
    with pytest.raises(InputError, match="expected a uint8 \\(height, width, 3\\) RGB frame"):
        to_pil(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(InputError, match="no such image file"):
        to_pil(tmp_path / "none.png")
