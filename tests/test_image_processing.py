"""minglm4v.processing.image against transformers' Glm4vImageProcessorPil and hand-computed layouts."""

import json
import re
import tempfile
import warnings
from pathlib import Path

import matplotlib.cbook
import numpy as np
import pytest
import torch
from helpers import MICRO, check_pixels, classify
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image
from transformers.models.glm4v.image_processing_pil_glm4v import Glm4vImageProcessorPil
from transformers.models.glm4v.image_processing_pil_glm4v import smart_resize as oracle_smart_resize

from minglm4v.processing.image import (
    CLIP_MEAN,
    CLIP_STD,
    Glm4vImageProcessor,
    patchify,
    smart_resize,
    to_rgb,
    unnormalize,
    unpatchify,
)

GRACE_HOPPER = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
CHECKPOINT_SIZE = {"shortest_edge": 12544, "longest_edge": 9633792}


@pytest.fixture(scope="module")
def oracle():
    # The checkpoint's values, passed explicitly: the class default longest_edge is 11,760,000.
    return Glm4vImageProcessorPil(size=CHECKPOINT_SIZE, image_mean=CLIP_MEAN, image_std=CLIP_STD)


@pytest.fixture(scope="module")
def ours():
    return Glm4vImageProcessor()


def noise_image(height, width, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def grace_hopper():
    with Image.open(GRACE_HOPPER) as image:
        return image.convert("RGB")


def assert_same_as_oracle(oracle, ours, images):
    expected = oracle(images=images, return_tensors="pt")
    actual = ours(images=images)
    assert torch.equal(actual["image_grid_thw"], expected["image_grid_thw"])
    assert actual["pixel_values"].dtype == torch.float32 and actual["image_grid_thw"].dtype == torch.int64
    torch.testing.assert_close(actual["pixel_values"], expected["pixel_values"], rtol=0, atol=1e-6)


# Reference §6.2: measured (height, width) -> resized (height, width) for images.
@pytest.mark.parametrize("size, resized", [
    ((224, 224), (224, 224)), ((336, 336), (336, 336)), ((448, 448), (448, 448)),
    ((480, 640), (476, 644)), ((768, 1024), (756, 1036)), ((1080, 1920), (1092, 1932)),
    ((2160, 3840), (1624, 2912)), ((100, 100), (112, 112)), ((28, 28), (84, 84)),
    ((10, 10), (84, 84)), ((50, 2000), (56, 1988)),
])
def test_smart_resize_measured_examples(size, resized):
    assert smart_resize(2, *size) == resized


def test_smart_resize_matches_oracle_on_a_sweep():
    rng = np.random.default_rng(1)
    cases = [(int(t), int(h), int(w)) for t, h, w in zip(rng.integers(2, 40, 300), rng.integers(1, 5000, 300),
                                                          rng.integers(1, 5000, 300))]
    cases += [(2, 1, 1), (2, 3, 5), (2, 27, 27), (2, 42, 42), (2, 70, 70), (3, 100, 100), (20, 720, 1280)]
    for t, h, w in cases:
        for max_pixels in (9633792, 47040000):
            kwargs = dict(temporal_factor=2, factor=28, min_pixels=12544, max_pixels=max_pixels)
            try:
                expected = oracle_smart_resize(t, h, w, **kwargs)
            except ValueError:
                with pytest.raises(ValueError, match="aspect ratio"):
                    smart_resize(t, h, w, **kwargs)
                continue
            assert smart_resize(t, h, w, **kwargs) == expected, (t, h, w, max_pixels)


MICRO_RANGE = dict(min_pixels=96800, max_pixels=100352)  # data/micro-model: 2 x 224x224 and 2 x 196x252 fit


def test_smart_resize_stays_in_a_narrow_range_and_matches_oracle_where_the_oracle_does():
    """In the micro model's narrow range, rounding to whole windows often leaves it; transformers then returns a
    size outside the range, minglm4v the nearest size inside. Wherever transformers stays inside, equal sizes."""
    inside = 0
    for h in range(20, 700, 23):
        for w in range(20, 700, 29):
            ours, theirs = smart_resize(2, h, w, **MICRO_RANGE), oracle_smart_resize(2, h, w, **MICRO_RANGE)
            assert 96800 <= 2 * ours[0] * ours[1] <= 100352, (h, w, ours)
            if 96800 <= 2 * theirs[0] * theirs[1] <= 100352:
                inside += 1
                assert ours == theirs, (h, w)
    assert inside == 32  # of the 870 sizes transformers keeps 32 inside the range: the comparison is not vacuous


def test_a_small_picture_works_with_the_micro_models_processor():
    micro = Glm4vImageProcessor.from_pretrained(MICRO)
    oracle = Glm4vImageProcessorPil(size={"shortest_edge": 96800, "longest_edge": 100352}, image_mean=CLIP_MEAN,
                                    image_std=CLIP_STD)
    picture = noise_image(64, 80)
    assert micro(picture)["image_grid_thw"].tolist() == [[1, 14, 18]]  # 196x252: 98,784 pixels in 2 frames
    # transformers rounds up to 224x252, 112,896 pixels: over the range it was given
    assert oracle(images=picture, return_tensors="pt")["image_grid_thw"].tolist() == [[1, 16, 18]]
    assert_same_as_oracle(oracle, micro, noise_image(100, 100))  # 224x224 for both: the same pixels


@pytest.mark.parametrize("height, width", [(20, 5000), (28, 5628), (1, 201), (5628, 28)])
def test_smart_resize_rejects_extreme_aspect_ratio(height, width):
    with pytest.raises(ValueError, match="aspect ratio must be smaller than 200"):
        smart_resize(2, height, width)


def test_smart_resize_rejects_zero_size_and_too_few_frames():
    with pytest.raises(ValueError, match="zero size"):
        smart_resize(2, 0, 10)
    with pytest.raises(ValueError, match="temporal_factor"):
        smart_resize(1, 100, 100)


SIZES = [
    (1, 1), (3, 5), (10, 10), (27, 29), (28, 28), (100, 100),  # tiny: scaled up
    (224, 224), (336, 336), (480, 640), (768, 1024), (1080, 1920), (2160, 3840),  # reference §6.2
    (50, 2000), (1, 200), (5600, 28), (3000, 20), (13, 999),  # extreme aspect ratios
    (333, 777), (4000, 1000),  # odd / large
]


@pytest.mark.parametrize("height, width", SIZES)
def test_matches_oracle_over_sizes(oracle, ours, height, width):
    assert_same_as_oracle(oracle, ours, noise_image(height, width, seed=height * 7919 + width))


@pytest.mark.parametrize("crop", [None, (0, 0, 600, 512), (100, 200, 113, 400), (0, 250, 600, 260), (40, 0, 41, 1)])
def test_matches_oracle_on_a_real_photo(oracle, ours, crop):
    image = grace_hopper()
    assert_same_as_oracle(oracle, ours, image if crop is None else image.crop(crop))


def test_matches_oracle_on_a_path_to_an_opaque_photo(oracle, ours):
    assert_same_as_oracle(oracle, ours, GRACE_HOPPER)
    assert_same_as_oracle(oracle, ours, str(GRACE_HOPPER))


MODES = ["RGB", "RGBA", "L", "LA", "P", "PA", "CMYK", "I", "F", "1", "YCbCr", "RGBX", "RGBa", "HSV", "LAB"]


@pytest.mark.parametrize("mode", MODES)
def test_matches_oracle_over_pil_modes(oracle, ours, mode):
    rgba = np.random.default_rng(2).integers(0, 256, (45, 61, 4), dtype=np.uint8)
    assert_same_as_oracle(oracle, ours, Image.fromarray(rgba).convert(mode))


def test_matches_oracle_on_16_bit_and_transparency_key(oracle, ours):
    rng = np.random.default_rng(3)
    assert_same_as_oracle(oracle, ours, Image.fromarray(rng.integers(0, 65536, (45, 61), dtype=np.uint16)))
    palette = noise_image(45, 61).quantize(16)
    palette.info["transparency"] = 3
    assert_same_as_oracle(oracle, ours, palette)
    grey = Image.fromarray(rng.integers(0, 256, (45, 61), dtype=np.uint8))
    grey.info["transparency"] = 17
    assert_same_as_oracle(oracle, ours, grey)


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_matches_oracle_on_arrays_and_tensors(oracle, ours, channels):
    hwc = np.random.default_rng(channels).integers(0, 256, (50, 70, channels), dtype=np.uint8)
    assert_same_as_oracle(oracle, ours, hwc)
    assert_same_as_oracle(oracle, ours, torch.from_numpy(hwc).permute(2, 0, 1))


def test_matches_oracle_on_a_mixed_batch(oracle, ours):
    batch = [grace_hopper(), noise_image(30, 900), Image.fromarray(np.zeros((64, 64, 4), np.uint8)), noise_image(7, 7)]
    assert_same_as_oracle(oracle, ours, batch)
    assert ours(batch).image_grid_thw.shape == (4, 3)


def test_16_bit_values_are_clipped_not_rescaled(ours):
    # Documented oracle behaviour we keep: PIL's I;16 -> RGB clips at 255.
    for value, expected in [(100, 100 / 255), (1000, 1.0)]:
        image = Image.fromarray(np.full((56, 112), value, dtype=np.uint16))
        out = ours(image)
        pixels = unnormalize(unpatchify(out.pixel_values, out.image_grid_thw)[0])
        torch.testing.assert_close(pixels, torch.full_like(pixels, expected), rtol=0, atol=1e-6)


def test_transparent_file_is_composited_onto_white_by_path_too(oracle, ours, tmp_path):
    rgba = np.random.default_rng(4).integers(0, 256, (40, 60, 4), dtype=np.uint8)
    rgba[:20, :, 3] = 0
    path = tmp_path / "cutout.png"
    Image.fromarray(rgba).save(path)
    with Image.open(path) as opened:
        assert_same_as_oracle(oracle, ours, opened)  # opened first: both composite onto white
    by_path = ours(path).pixel_values
    assert torch.equal(by_path, ours(Image.fromarray(rgba)).pixel_values)
    # transformers opens paths with a plain convert("RGB"), keeping the hidden colours: a known divergence.
    assert not torch.allclose(by_path, oracle(images=str(path), return_tensors="pt")["pixel_values"])


def test_path_is_turned_upright_by_exif_orientation(oracle, ours, tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    noise_image(60, 200).save(path, exif=exif)
    assert ours(path).image_grid_thw.tolist() == [[1, 14, 4]]  # 196×56 upright; on disk it is 60×200
    assert_same_as_oracle(oracle, ours, str(path))


def test_row_layout_matches_the_reference_description():
    # §2.1: row (bh, bw, mi, mj) holds patch (2bh + mi, 2bw + mj); column c·392 + t·196 + i·14 + j.
    frames = torch.randn(2, 3, 56, 84)
    rows, grid = patchify(frames)
    assert grid.tolist() == [1, 4, 6] and rows.shape == (24, 1176)
    for bh in range(2):
        for bw in range(3):
            for mi in range(2):
                for mj in range(2):
                    row = rows[(bh * 3 + bw) * 4 + mi * 2 + mj].view(3, 2, 14, 14)  # (c, t, i, j)
                    y, x = (2 * bh + mi) * 14, (2 * bw + mj) * 14
                    expected = frames[:, :, y:y + 14, x:x + 14].transpose(0, 1)
                    assert torch.equal(row, expected)


def test_still_image_is_duplicated_to_two_identical_frames(ours):
    pixel_values = ours(grace_hopper()).pixel_values.view(-1, 3, 2, 14, 14)
    assert torch.equal(pixel_values[:, :, 0], pixel_values[:, :, 1])


def test_unpatchify_round_trips_exactly(ours):
    out = ours([grace_hopper(), noise_image(100, 300)])
    images = unpatchify(out.pixel_values, out.image_grid_thw)
    assert [tuple(image.shape) for image in images] == [(2, 3, 588, 504), (2, 3, 112, 308)]
    assert torch.equal(torch.cat([patchify(image)[0] for image in images]), out.pixel_values)
    frames = torch.randn(6, 3, 28, 56)
    rows, grid = patchify(frames)
    assert torch.equal(unpatchify(rows, grid[None])[0], frames)
    assert torch.equal(unpatchify(rows, grid)[0], frames)  # patchify's own (3,) grid works too


def test_unnormalize_gives_the_resized_photo(ours):
    image = grace_hopper()
    out = ours(image)
    (frames,) = unpatchify(out.pixel_values, out.image_grid_thw)
    resized = np.array(image.resize((504, 588), Image.Resampling.BICUBIC))
    expected = torch.from_numpy(resized).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(unnormalize(frames[0]), expected, rtol=0, atol=1e-6)


def test_output_allows_attribute_access(ours):
    out = ours(noise_image(56, 56))
    assert out.pixel_values is out["pixel_values"] and set(out) == {"pixel_values", "image_grid_thw"}
    with pytest.raises(AttributeError):
        out.pixel_values_videos


def test_save_pretrained_is_readable_by_transformers(oracle, ours, tmp_path):
    path = Glm4vImageProcessor(min_pixels=20000, max_pixels=400000).save_pretrained(tmp_path)
    theirs = Glm4vImageProcessorPil.from_pretrained(tmp_path)
    assert (theirs.size.shortest_edge, theirs.size.longest_edge) == (20000, 400000)
    assert tuple(theirs.image_mean) == CLIP_MEAN and tuple(theirs.image_std) == CLIP_STD
    assert Glm4vImageProcessor.from_pretrained(tmp_path).to_dict() == json.loads(path.read_text())
    image = noise_image(900, 700)
    torch.testing.assert_close(Glm4vImageProcessor.from_pretrained(tmp_path)(image).pixel_values,
                               theirs(images=image, return_tensors="pt")["pixel_values"], rtol=0, atol=1e-6)
    # Same keys and values as transformers writes for the checkpoint, plus the hub file's processor_class.
    oracle.save_pretrained(tmp_path / "oracle")
    expected = json.loads((tmp_path / "oracle" / "preprocessor_config.json").read_text())
    assert ours.to_dict() == {**expected, "processor_class": "Glm4vProcessor"}


def test_from_pretrained_reads_the_checkpoint_file(tmp_path):
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({
        "size": {"shortest_edge": 12544, "longest_edge": 9633792}, "do_rescale": True, "patch_size": 14,
        "temporal_patch_size": 2, "merge_size": 2, "image_mean": list(CLIP_MEAN), "image_std": list(CLIP_STD),
        "image_processor_type": "Glm4vImageProcessor", "processor_class": "Glm4vProcessor"}))
    loaded = Glm4vImageProcessor.from_pretrained(tmp_path)
    assert loaded.to_dict() == Glm4vImageProcessor().to_dict()


def test_from_pretrained_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no preprocessor_config.json"):
        Glm4vImageProcessor.from_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"do_normalize": False}))
    with pytest.raises(ValueError, match="do_normalize=False; only do_normalize=True is implemented"):
        Glm4vImageProcessor.from_pretrained(tmp_path)


def test_rejects_extreme_aspect_ratio_and_zero_size(ours):
    with pytest.raises(ValueError, match="aspect ratio must be smaller than 200"):
        ours(noise_image(20, 5000))
    with pytest.raises(ValueError, match="zero size"):
        ours(Image.new("RGB", (0, 10)))
    with pytest.raises(ValueError, match="zero size"):
        ours(np.zeros((10, 0, 3), np.uint8))


def test_unreadable_files_name_the_file(ours, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot read image file .*broken.png"):
        ours(broken)
    truncated = tmp_path / "truncated.jpg"
    grace_hopper().save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:2000])
    with pytest.raises(ValueError, match="cannot read image file .*truncated.jpg"):
        ours(str(truncated))
    with pytest.raises(ValueError, match="cannot read image file .*missing.png"):
        ours(tmp_path / "missing.png")


@pytest.mark.parametrize("side", [40, 100])  # 1600 px: PIL warns; 10000 px: PIL raises
def test_decompression_bomb_limit_gives_a_clear_error(ours, tmp_path, monkeypatch, side):
    path = tmp_path / "big.png"
    noise_image(side, side).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the warning level must not leak out as a warning either
        bomb = r"big.png is over PIL's decompression-bomb limit.*MAX_IMAGE_PIXELS = None"
        with pytest.raises(ValueError, match=bomb):
            ours(path)


@pytest.mark.parametrize("image, error, message", [
    (np.zeros((40, 50), np.uint8), ValueError, r"\(H, W, C\) numpy array with C = 1, 3 or 4.*got shape \(40, 50\)"),
    (np.zeros((40, 50, 2), np.uint8), ValueError, r"got shape \(40, 50, 2\)"),
    (torch.zeros(40, 50, 3, dtype=torch.uint8), ValueError, r"\(C, H, W\) torch tensor.*channels-first"),
    (np.zeros((40, 50, 3), np.float32), TypeError, "uint8 .* got dtype float32"),
    (torch.zeros(3, 40, 50), TypeError, "uint8 .* got dtype float32"),
    ([[1, 2], [3, 4]], TypeError, "got list"),
    (42, TypeError, "got int"),
])
def test_rejects_wrong_inputs(ours, image, error, message):
    with pytest.raises(error, match=message):
        ours([image])


def test_rejects_empty_batch_and_other_tensor_types(ours):
    with pytest.raises(ValueError, match="no images given"):
        ours([])
    with pytest.raises(ValueError, match="only return_tensors='pt'"):
        ours(noise_image(56, 56), return_tensors="np")


def test_to_rgb_rejects_unconvertible_mode():
    with pytest.raises(ValueError, match="cannot convert a PIL image of mode La to RGB"):
        to_rgb(Image.new("La", (4, 4)))


# ---- bad pictures and settings
@pytest.mark.parametrize("text, message", [
    ("{", r"preprocessor_config.json is not valid JSON"),
    ("[]", r"preprocessor_config.json holds a JSON list"),
    ('{"size": 5}', r"preprocessor_config.json has 'size': 5; expected \{'shortest_edge': min_pixels"),
    ('{"patch_size": "14"}', r"patch_size must be an int, got str '14'"),
    ('{"size": {"shortest_edge": 0}}', r"min_pixels must be >= 1, got 0"),
])
def test_invalid_preprocessor_config(tmp_path, text, message):
    (tmp_path / "preprocessor_config.json").write_text(text)
    with pytest.raises((ValueError, TypeError), match=message):
        Glm4vImageProcessor.from_pretrained(tmp_path)


def test_image_file_with_corrupt_exif(tmp_path):
    path = tmp_path / "bad-exif.png"
    Image.new("RGB", (40, 30)).save(path, exif=b"garbage-not-tiff")  # PIL's EXIF reader raises SyntaxError
    with pytest.raises(ValueError, match=r"cannot read image file .*bad-exif.png: SyntaxError: not a TIFF file"):
        Glm4vImageProcessor()(path)


@pytest.mark.parametrize("image, error, message", [
    (torch.zeros(3, 40, 50, dtype=torch.bfloat16), TypeError, "uint8 .* got dtype bfloat16"),
    (torch.zeros(3, 40, 50, dtype=torch.uint8, device="meta"), ValueError, "on the meta device"),
    (np.zeros((40, 50, 3), dtype=bool), TypeError, "uint8 .* got dtype bool"),
    (np.zeros((40, 50, 3), dtype=object), TypeError, "uint8 .* got dtype object"),
])
def test_image_tensors_of_the_wrong_kind(image, error, message):
    with pytest.raises(error, match=message):
        Glm4vImageProcessor()(image)


@pytest.mark.parametrize("settings, error, message", [
    (dict(patch_size=0), ValueError, "patch_size must be >= 1, got 0"),
    (dict(merge_size=0), ValueError, "merge_size must be >= 1, got 0"),
    (dict(merge_size=1.5), TypeError, "merge_size must be an int, got float 1.5"),
    (dict(temporal_patch_size=-2), ValueError, "temporal_patch_size must be >= 1, got -2"),
    (dict(max_pixels=0), ValueError, "max_pixels must be >= 1, got 0"),
    (dict(min_pixels="12544"), TypeError, "min_pixels must be an int, got str '12544'"),
    (dict(min_pixels=10**9), ValueError, "min_pixels 1000000000 is larger than max_pixels 9633792"),
    (dict(min_pixels=2 * 10**8 + 1, max_pixels=10**9), ValueError, "max_pixels 1000000000 is over minglm4v's limit"),
    (dict(patch_size=5000), ValueError, "max_pixels 9633792 is smaller than the smallest picture these settings "
                                        r"make: one 10000x10000 window \(patch_size \* merge_size\) in 2 frames"),
    (dict(image_std=(0.5, 0.5)), ValueError, r"image_std must be 3 finite numbers .*got \(0.5, 0.5\)"),
    (dict(image_std=(0.5, 0, 0.5)), ValueError, r"image_std must be > 0 in every channel"),
    (dict(image_mean=(0.5, float("nan"), 0.5)), ValueError, "image_mean must be 3 finite numbers"),
    (dict(image_mean="0.5"), ValueError, "image_mean must be 3 finite numbers"),
])
def test_image_processor_settings_are_checked_at_construction(settings, error, message):
    with pytest.raises(error, match=message):
        Glm4vImageProcessor(**settings)


def test_pixel_range_too_narrow_for_the_grid():
    # 2 frames x 5..5.999 windows of 28x28 pixels: no whole number of windows fits
    with pytest.raises(ValueError, match=r"cannot resize 2 frame\(s\) of 30x40 into \[min_pixels=7841, "
                                         r"max_pixels=9407\]: no size on the 28-pixel grid has a pixel count in"):
        Glm4vImageProcessor(min_pixels=2 * 784 * 5 + 1, max_pixels=2 * 784 * 6 - 1)(np.zeros((30, 40, 3), np.uint8))


def test_rounding_out_of_a_narrow_range_takes_the_nearest_size_inside_it():
    # 30x40 needs an upscale to reach min_pixels; whole 28-pixel windows round it up to 84x112 x 2 frames =
    # 18,816 pixels, over max_pixels: the nearest size inside [12544, 17103] is 84x84 (14,112 pixels)
    out = Glm4vImageProcessor(min_pixels=12544, max_pixels=17103)(np.zeros((30, 40, 3), np.uint8))
    assert out["image_grid_thw"].tolist() == [[1, 6, 6]]


def test_float_image_with_nan_or_inf_is_refused():
    for bad in (np.nan, np.inf, -np.inf):
        values = np.full((40, 50), 0.5, np.float32)
        values[3, 4] = bad
        with pytest.raises(ValueError, match=r"PIL image of mode 'F' \(32-bit float\) holds NaN or infinite values"):
            Glm4vImageProcessor()(Image.fromarray(values, mode="F"))
    assert Glm4vImageProcessor()(Image.fromarray(values.clip(0, 1), mode="F"))["image_grid_thw"].tolist() == [[1, 6, 8]]


@pytest.mark.parametrize("shape", [(3, 56, 1), (1, 56, 3), (3, 56, 4), (3, 5, 3), (1, 40, 1)])
def test_ambiguous_numpy_layout_is_refused(oracle, shape):
    array = np.random.default_rng(4).integers(0, 256, shape, dtype=np.uint8)
    with pytest.raises(ValueError, match=rf"numpy image of shape {re.escape(str(shape))} is ambiguous: read as "
                                         r"\(H, W, C\) here, but transformers reads .* as the channels \(C, H, W\)"):
        Glm4vImageProcessor()(array)
    # The fix the message names: a torch tensor is (C, H, W), transformers' reading of the array
    expected = oracle(images=array, return_tensors="pt")
    actual = Glm4vImageProcessor()(torch.from_numpy(array))
    assert torch.equal(actual["image_grid_thw"], expected["image_grid_thw"])
    torch.testing.assert_close(actual["pixel_values"], expected["pixel_values"], rtol=0, atol=1e-6)


FUZZ_MODES = ["1", "L", "P", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV", "I", "F", "I;16", "LA", "PA", "RGBX"]


numpy_images = hnp.arrays(st.sampled_from([np.uint8, np.float32, np.int16, np.bool_]),
                          hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=40))


pil_images = st.builds(lambda mode, w, h: Image.new(mode, (w, h)), st.sampled_from(FUZZ_MODES),
                       st.integers(0, 60), st.integers(0, 60))


files = st.tuples(st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff"]), st.binary(max_size=300))


@given(image=st.one_of(numpy_images, numpy_images.map(torch.from_numpy), pil_images))
def test_fuzz_images(image):
    culprits = ("image", "uint8", "dtype", "shape", "size", "aspect ratio", "mode")
    if isinstance(image, torch.Tensor) and image.ndim == 3:
        image = image.permute(2, 0, 1) if image.shape[-1] in (1, 3, 4) else image
    classify("images", lambda: Glm4vImageProcessor()(image), check_pixels, culprits)


@given(content=files, exif=st.booleans())
def test_fuzz_image_files(content, exif):
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "picture.png"
        if exif:  # a real picture whose EXIF block is random bytes
            Image.new("RGB", (30, 20), (9, 99, 199)).save(path, exif=content[1])
        else:
            path.write_bytes(content[0] + content[1])
        classify("images", lambda: Glm4vImageProcessor()(path), check_pixels, ("picture.png",))


SETTINGS = ["min_pixels", "max_pixels", "patch_size", "temporal_patch_size", "merge_size", "image_mean", "image_std"]


values = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=4), st.booleans(), st.none(),
                   st.lists(st.floats(-2, 2), max_size=4))


sizes = {"min_pixels": 200_000, "max_pixels": 200_000, "patch_size": 64, "merge_size": 8, "temporal_patch_size": 4}


setting = st.sampled_from(SETTINGS).flatmap(
    lambda key: st.tuples(st.just(key), st.one_of(values, st.integers(-3, sizes.get(key, 3)))))


def settings_problem(kwargs, out):
    made = Glm4vImageProcessor(**kwargs)
    pixels = int(out["image_grid_thw"].prod()) * made.patch_size ** 2 * made.temporal_patch_size
    if not made.min_pixels <= made.max_pixels:
        return f"accepted min_pixels {made.min_pixels} > max_pixels {made.max_pixels}"
    if pixels > made.max_pixels and made.max_pixels >= 2 * (made.patch_size * made.merge_size) ** 2:
        return f"{pixels} pixels over max_pixels {made.max_pixels}"
    return check_pixels(out, patch=made.patch_size, frames=made.temporal_patch_size, merge=made.merge_size)


@given(kwargs=st.lists(setting, max_size=3).map(dict))
def test_fuzz_processor_settings(kwargs):
    picture = np.full((30, 40, 3), 128, np.uint8)
    classify("processor settings", lambda: Glm4vImageProcessor(**kwargs)(picture),
             lambda out: settings_problem(kwargs, out), SETTINGS)
