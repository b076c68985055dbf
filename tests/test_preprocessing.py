"""Image preprocessing against transformers' image processors (the PIL backend: no torchvision here).

Every processor config is written to a folder and loaded by `AutoImageProcessor.from_pretrained`,
so the processor class, its defaults and its size rules are transformers' own.
"""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest
from PIL import Image

from focalnet_edge.errors import ConfigError, InputError
from focalnet_edge.model import FocalNetConfig, ImageSpec
from focalnet_edge.model.preprocessing import image_spec_for, image_spec_for_folder, resize_edge_for, to_pil

transformers = pytest.importorskip("transformers")

CONFIG = {
    "do_resize": True, "size": {"shortest_edge": 256}, "resample": 2, "do_center_crop": True,
    "crop_size": {"height": 224, "width": 224}, "do_normalize": True, "image_mean": [0.485, 0.456, 0.406],
    "image_std": [0.229, 0.224, 0.225], "do_rescale": True, "rescale_factor": 1 / 255,
}
# (width, height): landscape, portrait, square, odd sizes, smaller than the crops
SIZES = [(640, 480), (300, 500), (224, 224), (97, 61), (61, 203)]


def _image(size, seed=0):
    return Image.fromarray(np.random.default_rng(seed + sum(size)).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def _processor(config):
    cls = getattr(transformers, "BitImageProcessorPil", None) or transformers.BitImageProcessor
    return cls(**config)


def _auto(folder, preprocessor, model_config=None):
    """transformers' processor for a checkpoint folder holding `preprocessor` (and a focalnet config.json)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(model_config or {"model_type": "focalnet", "image_size": 224}))
    (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor))
    return transformers.AutoImageProcessor.from_pretrained(str(folder), backend="pil")


def _expected(processor, image):
    return np.asarray(processor(image, return_tensors="np")["pixel_values"][0], np.float32)


@pytest.mark.parametrize("size", [(640, 480), (300, 500), (256, 256), (225, 601), (100, 90)])
@pytest.mark.parametrize("resample", [2, 3])
def test_same_pixel_values_as_transformers(size, resample):
    config = dict(CONFIG, resample=resample)
    image = Image.fromarray(np.random.default_rng(sum(size)).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    expected = _processor(config)(image, return_tensors="np")["pixel_values"][0]
    got = ImageSpec.from_preprocessor_config(config).preprocess(image)
    assert got.shape == expected.shape == (3, 224, 224)
    assert np.abs(got - expected).max() <= 1e-5


# Configs as the ecosystem writes them; each with the class named (or not) and keys left out so
# that the class's own defaults apply. The id says what is checked.
PROCESSOR_CONFIGS = {
    "bit-official-focalnet": dict(CONFIG, image_processor_type="BitImageProcessor", resample=3),
    "bit-defaults-only": {"image_processor_type": "BitImageProcessor"},
    "bit-fast-name-int-sizes": {"image_processor_type": "BitImageProcessorFast", "size": 96, "crop_size": 80},
    "bit-default-to-square": {"image_processor_type": "BitImageProcessor", "size": 96, "default_to_square": True, "crop_size": [80, 64]},
    "bit-no-resize-crop-pads": {"image_processor_type": "BitImageProcessor", "do_resize": False, "crop_size": {"height": 120, "width": 100}},
    "bit-no-rescale-no-normalize": {"image_processor_type": "BitImageProcessor", "size": 72, "crop_size": 64, "do_rescale": False, "do_normalize": False},
    "bit-scalar-mean-std": {"image_processor_type": "BitImageProcessor", "size": 72, "crop_size": 64, "image_mean": 0.4, "image_std": 0.3},
    "no-type-focalnet-fallback": {"size": {"shortest_edge": 80}, "crop_size": {"height": 64, "width": 64}},
    "legacy-vit-feature-extractor": {"feature_extractor_type": "ViTFeatureExtractor", "size": 96, "resample": 3},
    "vit-defaults-only": {"image_processor_type": "ViTImageProcessor"},
    "vit-fast-rectangular": {"image_processor_type": "ViTImageProcessorFast", "size": {"height": 64, "width": 96}},
    "vit-with-crop": {"image_processor_type": "ViTImageProcessor", "size": 80, "do_center_crop": True, "crop_size": 64},
    "deit-defaults-only": {"image_processor_type": "DeiTImageProcessor"},
    "deit-fast-small": {"image_processor_type": "DeiTImageProcessorFast", "size": 80, "crop_size": {"height": 64, "width": 48}},
    "convnext-defaults-384-warps": {"image_processor_type": "ConvNextImageProcessor"},
    "convnext-224-crop-pct": {"image_processor_type": "ConvNextImageProcessor", "size": {"shortest_edge": 224}},
    "convnext-int-size-crop-pct-0.9": {"image_processor_type": "ConvNextImageProcessorFast", "size": 96, "crop_pct": 0.9},
    "convnext-crop-pct-above-1-pads": {"image_processor_type": "ConvNextImageProcessor", "size": 96, "crop_pct": 1.25},
    "convnext-double-crop": {"image_processor_type": "ConvNextImageProcessor", "size": 97, "crop_pct": 0.8, "do_center_crop": True, "crop_size": 70},
    "convnext-400-warps-rectangle-crop": {"image_processor_type": "ConvNextImageProcessor", "size": 400, "do_center_crop": True, "crop_size": [384, 320]},
    "convnext-no-resize": {"image_processor_type": "ConvNextImageProcessor", "do_resize": False, "do_center_crop": True, "crop_size": 64},
}


@pytest.mark.parametrize("name", list(PROCESSOR_CONFIGS))
def test_processor_types_match_transformers(tmp_path, name):
    config = PROCESSOR_CONFIGS[name]
    processor = _auto(tmp_path, config)
    spec = image_spec_for_folder(tmp_path, FocalNetConfig(image_size=224))
    for i, size in enumerate(SIZES):
        image = _image(size, i)
        expected, got = _expected(processor, image), spec.preprocess(image)
        assert got.shape == expected.shape, (name, size)
        assert np.abs(got - expected).max() <= 1e-5, (name, size)
    assert type(processor).__name__.removesuffix("Pil") in spec.origin


def test_nested_processor_config_is_read_first(tmp_path):
    """transformers 5 may write the image processor inside processor_config.json; it wins."""
    processor = _auto(tmp_path, {"image_processor_type": "BitImageProcessor", "size": 300, "crop_size": 256})
    (tmp_path / "processor_config.json").write_text(json.dumps({"image_processor": PROCESSOR_CONFIGS["deit-fast-small"]}))
    processor = transformers.AutoImageProcessor.from_pretrained(str(tmp_path), backend="pil")
    spec = image_spec_for_folder(tmp_path, FocalNetConfig(image_size=224))
    image = _image((200, 150))
    assert spec.preprocess(image).shape == (3, 64, 48)
    assert np.abs(spec.preprocess(image) - _expected(processor, image)).max() <= 1e-5


@pytest.mark.parametrize(
    "spec",
    [
        ImageSpec(),
        ImageSpec(96, 80, None, True, resize_height=120, resize_width=100, resample=3),
        ImageSpec(64, 64, None, False, mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3)),
        ImageSpec(70, 70, 121, True, square_crop=97, resample=3),
        ImageSpec(64, 48, None, True, do_resize=False),
    ],
    ids=["default", "warp-then-crop", "warp", "convnext-double-crop", "crop-only"],
)
def test_written_preprocessor_config_reads_back_in_transformers(tmp_path, spec):
    processor = _auto(tmp_path, spec.to_preprocessor_config())
    for i, size in enumerate(SIZES[:3]):
        image = _image(size, i)
        assert np.abs(spec.preprocess(image) - _expected(processor, image)).max() <= 1e-5


def test_no_preprocessor_config_uses_config_image_size_and_says_so(tmp_path, caplog):
    """Fallback: config.json's image_size, resize to size / 0.875, centre crop, bicubic, ImageNet
    statistics -- the same as transformers' ConvNext crop_pct rule with those values."""
    with caplog.at_level(logging.WARNING):
        spec = image_spec_for(None, FocalNetConfig(image_size=96))
    assert (spec.height, spec.width, spec.resize_shortest_edge, spec.resample) == (96, 96, 109, 3)
    assert "no preprocessor config" in spec.origin and "96x96" in spec.origin and "no preprocessor config" in caplog.text
    reference = transformers.ConvNextImageProcessorPil(
        size={"shortest_edge": 96}, crop_pct=0.875, image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225]
    )
    for i, size in enumerate(SIZES):
        image = _image(size, i)
        assert np.abs(spec.preprocess(image) - _expected(reference, image)).max() <= 1e-5
    # a folder without preprocessor_config.json: the same, and it lands in the spec's dict (manifest)
    assert image_spec_for_folder(tmp_path, FocalNetConfig(image_size=96)).to_dict() == spec.to_dict()


def test_output_size_differing_from_config_image_size_is_reported(caplog):
    with caplog.at_level(logging.WARNING):
        spec = image_spec_for(PROCESSOR_CONFIGS["vit-defaults-only"], {"model_type": "focalnet", "image_size": 384})
    assert "output 224x224 differs from config.json image_size 384x384" in spec.origin
    assert "differs from config.json image_size" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        image_spec_for(PROCESSOR_CONFIGS["vit-defaults-only"], FocalNetConfig(image_size=224))
    assert "differs" not in caplog.text


def test_one_resize_edge_rule():
    """int(size / crop_pct) as transformers' ConvNext and timm compute it (floor, never round)."""
    for size in (32, 64, 96, 224, 256, 288, 384, 512):
        assert resize_edge_for(size) == int(size / (224 / 256)) == math.floor(size * 256 / 224)
    assert (resize_edge_for(224), resize_edge_for(384)) == (256, 438)
    spec = ImageSpec(resample=3)
    assert spec.for_size(384, 384).resize_shortest_edge == 438 and spec.for_size(224, 224) is spec
    warp = ImageSpec(64, 64, None, True, resize_height=80, resize_width=80).for_size(128, 96)
    assert (warp.height, warp.width, warp.resize_height, warp.resize_width) == (128, 96, 160, 120)


BAD = [
    ({"image_std": [0.2, 0.0, 0.2]}, "image_std .* <= 0"),
    ({"image_std": [0.2, -0.1, 0.2]}, "image_std .* <= 0"),
    ({"image_std": 0}, "image_std .* <= 0"),
    ({"image_mean": [0.5, float("nan"), 0.5]}, "image_mean .* finite"),
    ({"image_std": [0.5, float("inf"), 0.5]}, "image_std .* finite"),
    ({"image_mean": [0.5, 0.5]}, "image_mean .* 3 finite numbers"),
    ({"size": {"shortest_edge": 0}}, "size .* positive whole number"),
    ({"crop_size": {"height": -1, "width": 224}}, "crop_size .* positive whole number"),
    ({"crop_size": {"height": 22.5, "width": 224}}, "crop_size .* positive whole number"),
    ({"size": {"longest_edge": 300}}, "size .* not read"),
    ({"rescale_factor": 0}, "rescale_factor 0 is not a finite positive number"),
    ({"resample": 9}, "resample 9 is not a PIL resampling filter"),
    ({"do_center_crop": False}, "no fixed output size"),
    ({"image_processor_type": "ViTImageProcessor", "size": {"shortest_edge": 224}}, "ViTImageProcessor .* no fixed output size"),
    ({"image_processor_type": "ConvNextImageProcessor", "size": {"height": 224, "width": 224}}, "needs a shortest_edge"),
    ({"image_processor_type": "ConvNextImageProcessor", "size": 224, "crop_pct": 0}, "crop_pct 0 is not a positive number"),
    ({"image_processor_type": "ViTImageProcessor", "do_center_crop": True}, "no crop_size"),
]


@pytest.mark.parametrize("change,message", BAD, ids=[m.split()[0] + str(i) for i, (_, m) in enumerate(BAD)])
def test_impossible_values_are_refused_up_front(tmp_path, change, message):
    path = tmp_path / "preprocessor_config.json"
    # a change naming its own processor type is the whole config; others change the official one
    config = change if "image_processor_type" in change else {**CONFIG, "image_processor_type": "BitImageProcessor", **change}
    path.write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=message) as e:
        ImageSpec.from_file(path)
    assert "\n" not in str(e.value) and str(path) in str(e.value)


def test_impossible_values_are_refused_when_stored_metadata_is_read():
    """The input contract of an artifact rebuilds its ImageSpec from metadata: checked there too."""
    with pytest.raises(ConfigError, match="image_std"):
        ImageSpec(**dict(ImageSpec().to_dict(), std=[0.2, 0.0, 0.2]))
    with pytest.raises(ConfigError, match="height"):
        ImageSpec(**dict(ImageSpec().to_dict(), height=0))


def test_unknown_processor_type_is_one_line_naming_type_and_keys(tmp_path):
    path = tmp_path / "preprocessor_config.json"
    path.write_text(json.dumps({"image_processor_type": "SiglipImageProcessor", "size": {"height": 224, "width": 224}}))
    with pytest.raises(ConfigError) as e:
        ImageSpec.from_file(path)
    msg = str(e.value)
    assert "\n" not in msg and "'SiglipImageProcessor'" in msg and "image_processor_type, size" in msg
    assert "BitImageProcessor" in msg and "--image-size" in msg
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="not a readable preprocessor config"):
        ImageSpec.from_file(path)
    path.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="expected a JSON object"):
        ImageSpec.from_file(path)


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
