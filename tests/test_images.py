"""The one image loader: every mode built here with PIL/numpy and checked against an independent
computation (numpy formulas, or transformers' `load_image` where it does not lose the picture)."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from focalnet_edge.errors import InputError
from focalnet_edge.inputs.images import IMAGE_SUFFIXES, load_image
from focalnet_edge.model import ImageSpec
from focalnet_edge.model.preprocessing import to_pil

RNG = np.random.default_rng(0)


def _rgb(path_or_image) -> np.ndarray:
    image = load_image(path_or_image)
    assert image.mode == "RGB"
    return np.asarray(image)


def _grey3(a: np.ndarray) -> np.ndarray:
    return np.repeat(a[..., None], 3, axis=-1)


def test_to_pil_is_the_loader():
    assert to_pil is load_image
    assert ".tif" in IMAGE_SUFFIXES and ".gif" in IMAGE_SUFFIXES


@pytest.mark.parametrize("fmt", ["png", "tiff"])
def test_16_bit_grey_is_scaled_not_saturated(tmp_path, fmt):
    a = RNG.integers(0, 65536, (37, 53), dtype=np.uint16)
    a[0, :4] = [0, 256, 32896, 65535]
    Image.fromarray(a).save(tmp_path / f"g16.{fmt}")
    assert Image.open(tmp_path / f"g16.{fmt}").mode.startswith("I;16")  # the test builds what it means to
    got = _rgb(tmp_path / f"g16.{fmt}")
    assert np.array_equal(got, _grey3(np.round(a / 257.0).astype(np.uint8)))
    assert list(got[0, :4, 0]) == [0, 1, 128, 255]
    # convert("RGB") (transformers' load_image) saturates: almost everything is 255
    assert (np.asarray(Image.open(tmp_path / f"g16.{fmt}").convert("RGB")) == 255).mean() > 0.9
    assert (got == 255).mean() < 0.01


def test_16_bit_rgb_png_keeps_its_high_byte(tmp_path):
    """48-bit RGB PNG (written here byte by byte): Pillow decodes it to 8 bits per channel, v // 256."""
    a = RNG.integers(0, 65536, (9, 11, 3)).astype(">u2")
    a[0, 0] = [0, 256, 65535]
    raw = b"".join(b"\0" + row.tobytes() for row in a)
    header = struct.pack(">IIBBBBB", 11, 9, 16, 2, 0, 0, 0)
    (tmp_path / "rgb48.png").write_bytes(_png(header, zlib.compress(raw)))
    got = _rgb(tmp_path / "rgb48.png")
    assert np.array_equal(got, (a // 256).astype(np.uint8)) and list(got[0, 0]) == [0, 1, 255]


def test_32_bit_signed_int_tiff_uses_its_range(tmp_path):
    a = RNG.integers(-(2**31), 2**31 - 1, (20, 30), dtype=np.int32)
    a[0, :3] = [-5, 0, 2**31 - 1]
    Image.fromarray(a).save(tmp_path / "i32.tif")
    im = Image.open(tmp_path / "i32.tif")
    assert im.mode == "I" and im.tag_v2[339] in (2, (2,)) and im.tag_v2[258] in (32, (32,))
    expected = np.round(np.clip(a.astype(np.float64), 0, 2**31 - 1) * 255 / (2**31 - 1)).astype(np.uint8)
    got = _rgb(tmp_path / "i32.tif")
    assert np.array_equal(got, _grey3(expected)) and list(got[0, :3, 0]) == [0, 0, 255]


def test_untagged_int_image_in_16_bit_range(tmp_path):
    """An `I` image made in memory (how Pillow long handed over 16-bit PNGs): 0..65535."""
    a = RNG.integers(0, 65536, (10, 12)).astype(np.int32)
    assert np.array_equal(_rgb(Image.fromarray(a)), _grey3(np.round(a / 257.0).astype(np.uint8)))


@pytest.mark.parametrize("top", [1.0, 255.0, 65535.0])
def test_float_tiff_is_scaled_from_its_range(tmp_path, top):
    a = (RNG.random((16, 24)) * top).astype(np.float32)
    a[0, 0], a[0, 1] = top, -0.5 * top  # the maximum picks the range; negatives clip to 0
    Image.fromarray(a).save(tmp_path / "f.tif")
    assert Image.open(tmp_path / "f.tif").mode == "F"
    expected = np.round(np.clip(a.astype(np.float64), 0, top) * (255 / top)).astype(np.uint8)
    got = _rgb(tmp_path / "f.tif")
    assert np.array_equal(got, _grey3(expected)) and got[0, 0, 0] == 255 and got[0, 1, 0] == 0


def test_float_with_nan_is_refused(tmp_path):
    a = np.zeros((4, 4), np.float32)
    a[1, 1] = np.nan
    Image.fromarray(a).save(tmp_path / "nan.tif")
    with pytest.raises(InputError, match=r"nan.tif: a float image with NaN or infinite pixel values"):
        load_image(tmp_path / "nan.tif")


def test_palette_grey_bilevel_cmyk(tmp_path):
    idx = RNG.integers(0, 16, (20, 30), dtype=np.uint8)
    palette = RNG.integers(0, 256, (16, 3), dtype=np.uint8)
    p = Image.fromarray(idx, "P")
    p.putpalette(palette.flatten().tolist())
    p.save(tmp_path / "p.png")
    assert np.array_equal(_rgb(tmp_path / "p.png"), palette[idx])

    grey = RNG.integers(0, 256, (20, 30), dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / "l.png")
    assert np.array_equal(_rgb(tmp_path / "l.png"), _grey3(grey))

    bits = RNG.integers(0, 2, (20, 30)).astype(bool)
    Image.fromarray(bits).save(tmp_path / "b.png")
    assert np.array_equal(_rgb(tmp_path / "b.png"), _grey3(bits.astype(np.uint8) * 255))

    cmyk = RNG.integers(0, 256, (20, 30, 4), dtype=np.uint8)
    Image.fromarray(cmyk, "CMYK").save(tmp_path / "c.tif")
    c = cmyk.astype(np.float64)
    expected = (255 - c[..., :3]) * (255 - c[..., 3:]) / 255  # subtractive CMYK -> RGB
    assert np.abs(_rgb(tmp_path / "c.tif").astype(np.float64) - expected).max() <= 1


def _white_composite(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha[..., None].astype(np.float64) / 255
    return a * rgb + (1 - a) * 255


def test_transparency_is_composited_onto_white(tmp_path):
    rgba = RNG.integers(0, 256, (20, 30, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    assert np.abs(_rgb(tmp_path / "rgba.png") - _white_composite(rgba[..., :3], rgba[..., 3])).max() <= 1

    la = RNG.integers(0, 256, (20, 30, 2), dtype=np.uint8)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    assert np.abs(_rgb(tmp_path / "la.png") - _white_composite(_grey3(la[..., 0]), la[..., 1])).max() <= 1

    idx = RNG.integers(0, 4, (20, 30), dtype=np.uint8)
    palette = np.array([[10, 20, 30], [200, 0, 0], [0, 200, 0], [0, 0, 200]], np.uint8)
    p = Image.fromarray(idx, "P")
    p.putpalette(palette.flatten().tolist())
    p.save(tmp_path / "pt.png", transparency=0)
    expected = palette[idx].copy()
    expected[idx == 0] = 255
    assert np.array_equal(_rgb(tmp_path / "pt.png"), expected)

    # a uint8 RGBA frame: the same rule
    assert np.abs(_rgb(rgba) - _white_composite(rgba[..., :3], rgba[..., 3])).max() <= 1


def test_transparency_matches_transformers_processor(tmp_path):
    """transformers' processors (do_convert_rgb) composite onto white too: same pixel values."""
    transformers = pytest.importorskip("transformers")
    rgba = Image.fromarray(RNG.integers(0, 256, (90, 120, 4), dtype=np.uint8), "RGBA")
    config = {"size": {"shortest_edge": 72}, "crop_size": {"height": 64, "width": 64}, "image_mean": [0.485, 0.456, 0.406],
              "image_std": [0.229, 0.224, 0.225], "resample": 3}
    expected = transformers.BitImageProcessorPil(**config)(rgba, return_tensors="np")["pixel_values"][0]
    assert np.abs(ImageSpec.from_preprocessor_config(config).preprocess(rgba) - expected).max() <= 1e-5


@pytest.mark.parametrize("orientation,turn", [(1, lambda a: a), (3, lambda a: np.rot90(a, 2)), (6, lambda a: np.rot90(a, -1)),
                                              (8, lambda a: np.rot90(a, 1)), (2, lambda a: a[:, ::-1])])
def test_exif_orientation_is_applied(tmp_path, orientation, turn):
    a = RNG.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(a).save(tmp_path / "o.png", exif=exif)
    Image.fromarray(a).save(tmp_path / "o.jpg", exif=exif, quality=100)
    assert np.array_equal(_rgb(tmp_path / "o.png"), turn(a))
    assert np.array_equal(_rgb(Image.open(tmp_path / "o.png")), turn(a))  # a PIL image given directly: the same
    pytest.importorskip("transformers")
    from transformers.image_utils import load_image as hf_load_image

    assert np.array_equal(_rgb(tmp_path / "o.jpg"), np.asarray(hf_load_image(str(tmp_path / "o.jpg"))))


@pytest.mark.parametrize("mode", ["L", "P", "CMYK", "1"])
def test_8_bit_modes_match_transformers_load_image(tmp_path, mode):
    pytest.importorskip("transformers")
    from transformers.image_utils import load_image as hf_load_image

    im = Image.fromarray(RNG.integers(0, 256, (20, 30, 3), dtype=np.uint8)).convert(mode)
    path = tmp_path / ("x.tif" if mode == "CMYK" else "x.png")
    im.save(path)
    assert np.array_equal(_rgb(path), np.asarray(hf_load_image(str(path))))


@pytest.mark.parametrize("fmt", ["gif", "png", "webp"])
def test_animated_images_give_the_first_frame(tmp_path, fmt):
    frames = [Image.new("RGB", (16, 12), c) for c in ((200, 0, 0), (0, 0, 200), (0, 200, 0))]
    path = tmp_path / f"anim.{fmt}"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0, **({"lossless": True} if fmt == "webp" else {}))
    assert getattr(Image.open(path), "n_frames", 1) == 3
    got = _rgb(path)
    assert np.abs(got.astype(int) - [200, 0, 0]).max() <= 2


def _png(ihdr: bytes, idat: bytes) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height grey pixels but holds a few bytes: a decompression bomb."""
    return _png(struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0), zlib.compress(b"\0" * 64))


def test_decompression_bomb_is_one_line_input_error(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header_only(100_000, 100_000))
    assert bomb.stat().st_size < 200
    with pytest.raises(InputError) as e:
        load_image(bomb)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{bomb}: refused as a possible decompression bomb")
    assert "10000000000 pixels" in msg and "PIL.Image.MAX_IMAGE_PIXELS" in msg


def test_decompression_bomb_warning_level_is_refused_too(tmp_path, monkeypatch):
    """Pillow only warns between MAX_IMAGE_PIXELS and twice that; the loader refuses there as well."""
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(InputError, match=r"big.png: refused as a possible decompression bomb \(Image size \(1600 pixels\) exceeds limit of 1000"):
        load_image(tmp_path / "big.png")


def test_calibration_skips_a_bomb_and_reads_deep_images_with_the_same_loader(tmp_path, caplog):
    from focalnet_edge.calibration.data import load_calibration_data
    from focalnet_edge.folder.contract import InputContract

    folder = tmp_path / "calib"
    folder.mkdir()
    (folder / "bomb.png").write_bytes(_png_header_only(100_000, 100_000))
    a = RNG.integers(0, 65536, (40, 40), dtype=np.uint16)
    Image.fromarray(a).save(folder / "deep.tif")
    spec = ImageSpec(32, 32, None, False)
    contract = InputContract(height=32, width=32, preprocessing=spec.to_dict())
    with caplog.at_level("WARNING"):
        data = load_calibration_data(folder, contract, size=None)
    assert data.skipped == 1 and len(data) == 1
    assert "bomb.png: refused as a possible decompression bomb" in caplog.text
    expected = np.asarray(spec.resize_and_crop(Image.fromarray(_grey3(np.round(a / 257.0).astype(np.uint8)))))
    assert np.array_equal(data.frames[0], expected)


def test_runtime_frames_use_the_loader(tmp_path):
    from focalnet_edge.folder.contract import InputContract

    a = RNG.integers(0, 65536, (40, 40), dtype=np.uint16)
    Image.fromarray(a).save(tmp_path / "deep.png")
    contract = InputContract(height=40, width=40, preprocessing=ImageSpec(40, 40, None, False).to_dict())
    frames = contract.frames_from_images([tmp_path / "deep.png"])
    assert np.array_equal(frames[0], _grey3(np.round(a / 257.0).astype(np.uint8)))


@pytest.mark.parametrize("bad,message", [
    (None, "a NoneType is not an image"),
    (5, "an? int is not an image"),
    (b"abc", "encoded image: not a readable image"),
    (np.zeros((0, 0, 3), np.uint8), "an empty frame"),
    (np.zeros((4, 4), np.uint8), "expected a uint8 \\(height, width, 3\\) RGB frame"),
])
def test_non_images_are_one_line_errors(bad, message):
    with pytest.raises(InputError, match=message):
        load_image(bad)


def test_unreadable_files_are_one_line_errors(tmp_path):
    (tmp_path / "x.png").write_bytes(b"not an image")
    with pytest.raises(InputError, match=r"x.png: not a readable image \(UnidentifiedImageError\)"):
        load_image(tmp_path / "x.png")
    good = tmp_path / "t.png"
    Image.fromarray(np.zeros((50, 50, 3), np.uint8)).save(good)
    (tmp_path / "trunc.png").write_bytes(good.read_bytes()[:60])
    with pytest.raises(InputError, match="trunc.png: not a readable image"):
        load_image(tmp_path / "trunc.png")
    with pytest.raises(InputError, match="a folder, not an image file|not a readable image"):
        load_image(tmp_path)


def test_walk_images_is_the_one_folder_walk(tmp_path):
    """Images by suffix (any case) at any depth, sorted; other files apart; folders never listed,
    even one named like an image; calibration and verification see the same files."""
    from PIL import Image

    from focalnet_edge.calibration.data import load_calibration_data
    from focalnet_edge.folder.contract import InputContract
    from focalnet_edge.inputs.images import walk_images
    from focalnet_edge.verify.compare import load_image_set

    (tmp_path / "b" / "deep").mkdir(parents=True)
    (tmp_path / "dir.png").mkdir()
    for name in ("z.JPG", "a.png", "b/deep/c.webp", "b/d.tif"):
        Image.new("RGB", (8, 8), (10, 20, 30)).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "b" / "broken.jpg").write_bytes(b"not a jpeg")
    images, others = walk_images(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in images] == ["a.png", "b/broken.jpg", "b/d.tif", "b/deep/c.webp", "z.JPG"]
    assert [p.relative_to(tmp_path).as_posix() for p in others] == ["notes.txt"]
    assert load_image_set(tmp_path).paths == images
    calib = load_calibration_data(tmp_path, InputContract(height=8, width=8, preprocessing={"height": 8, "width": 8, "resize_shortest_edge": 8}))
    assert (len(calib.frames), calib.skipped) == (4, 2)  # the broken jpeg and the text file
