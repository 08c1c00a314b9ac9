"""minglm4v.processing.video against hand-computed expectations.

transformers' Glm4vVideoProcessor needs torchvision, which does not load here; the image path it
shares with the image processor is checked against transformers in test_image_processing.py.
"""

import json
import math
import sys

import matplotlib.cbook
import numpy as np
import pytest
import torch
from helpers import check_pixels, classify, write_video
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from minglm4v.processing.image import Glm4vImageProcessor, smart_resize, unnormalize, unpatchify
from minglm4v.processing.video import Glm4vVideoProcessor, load_video, sample_frame_indices


@pytest.fixture(scope="module")
def video_processor():
    return Glm4vVideoProcessor()


def make_video(frames, height, width):
    """(T, H, W, 3) uint8 whose every frame is different and every pixel tells its position."""
    k, y, x, c = np.meshgrid(np.arange(frames), np.arange(height), np.arange(width), np.arange(3), indexing="ij")
    return ((k * 41 + y * 3 + x * 5 + c * 70) % 256).astype(np.uint8)


def decoded_frames(out, index=0):
    """The (T, H, W, 3) uint8 frames a video's rows hold (exact: the normalisation is undone and rounded)."""
    frames = unpatchify(out.pixel_values_videos, out.video_grid_thw)[index]
    return (unnormalize(frames) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


# sample_frame_indices: (total_frames, video_fps, duration) -> indices, each worked out by hand from §6.4.
@pytest.mark.parametrize("total, video_fps, duration, expected", [
    # 60 frames at 30 fps: estimated duration round(59/30) + 1 = 3 s -> 6 samples at ceil(15 i), clamped
    # to 59, de-duplicated to 5, padded to 6 by repeating the last one.
    (60, 30, None, [0, 15, 30, 45, 59, 59]),
    (60, 30, 2.0, [0, 15, 30, 45]),  # a known 2 s duration: 4 samples
    (7, 3, None, [0, 2, 3, 5, 6, 6]),  # 3 s -> ceil(1.5 i) = 0, 2, 3, 5, 6, 8 -> clamp, dedupe, pad
    (1, 30, None, [0, 0]),  # a single frame becomes one temporal pair
    (10, 1, None, list(range(10))),  # 1 fps source: 20 samples at ceil(i / 2) collapse to every frame
    (400, 1, None, list(range(400))),  # 400 s > 300 s but only 400 frames <= 600 samples: all of them
])
def test_sample_frame_indices_by_hand(total, video_fps, duration, expected):
    assert sample_frame_indices(total, video_fps, duration=duration) == expected


def test_sample_frame_indices_long_clip_spreads_600_samples():
    # 10 minutes at 25 fps: 600 samples at linspace(0, 600, 600) s -> ceil(t · 25), last clamped.
    indices = sample_frame_indices(15000, 25, duration=600.0)
    assert len(indices) == 600 and indices[:4] == [0, 26, 51, 76] and indices[-1] == 14999
    assert all(b > a for a, b in zip(indices, indices[1:]))


def test_sample_frame_indices_errors():
    with pytest.raises(ValueError, match="video is empty"):
        sample_frame_indices(0, 30)
    with pytest.raises(ValueError, match="video_fps must be the source frame rate"):
        sample_frame_indices(10, 0)


def test_one_pixel_budget_for_the_whole_clip():
    assert smart_resize(20, 720, 1280, max_pixels=47040000) == (728, 1288)  # reference §6.4 example
    # 8 frames of 112×224 with a 100,000-pixel budget: beta = sqrt(8·112·224 / 1e5) = 1.4167,
    # h = floor(112 / beta / 28) · 28 = 56, w = floor(224 / beta / 28) · 28 = 140.
    video = make_video(8, 112, 224)
    out = Glm4vVideoProcessor(max_pixels=100000)(video, sample_frames=False, fps=4)
    assert out.video_grid_thw.tolist() == [[4, 4, 10]]
    assert out.pixel_values_videos.shape == (4 * 4 * 10, 1176)
    assert Glm4vImageProcessor()(video[0]).image_grid_thw.tolist() == [[1, 8, 16]]  # alone: full size


def test_defaults_are_the_checkpoint_video_config(tmp_path):
    (tmp_path / "video_preprocessor_config.json").write_text(json.dumps({
        "size": {"shortest_edge": 12544, "longest_edge": 47040000}, "do_rescale": True, "patch_size": 14,
        "temporal_patch_size": 2, "merge_size": 2, "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711], "video_processor_type": "Glm4vVideoProcessor",
        "processor_class": "Glm4vProcessor"}))
    loaded = Glm4vVideoProcessor.from_pretrained(tmp_path)
    assert loaded.to_dict() == Glm4vVideoProcessor().to_dict()
    assert (loaded.min_pixels, loaded.max_pixels, loaded.fps, loaded.max_duration) == (12544, 47040000, 2, 300)
    saved = Glm4vVideoProcessor(fps=1, max_duration=60).save_pretrained(tmp_path / "saved")
    assert saved.name == "video_preprocessor_config.json"
    assert Glm4vVideoProcessor.from_pretrained(tmp_path / "saved").to_dict()["fps"] == 1


def test_rows_are_group_window_patch_ordered_and_slices_are_consecutive_frames(video_processor):
    video = make_video(6, 56, 84)  # multiples of 28 inside the budget: no resizing, exact pixels
    out = video_processor(video, sample_frames=False, fps=1)
    assert out.video_grid_thw.tolist() == [[3, 4, 6]]
    rows = out.pixel_values_videos.view(-1, 3, 2, 14, 14).transpose(1, 2)  # (row, t, c, i, j)
    pixels = (unnormalize(rows) * 255).round().to(torch.uint8)
    for group in range(3):
        for bh in range(2):
            for bw in range(3):
                for mi in range(2):
                    for mj in range(2):
                        row = ((group * 2 + bh) * 3 + bw) * 4 + mi * 2 + mj
                        y, x = (2 * bh + mi) * 14, (2 * bw + mj) * 14
                        for t in range(2):
                            patch = torch.from_numpy(video[2 * group + t, y:y + 14, x:x + 14]).permute(2, 0, 1)
                            assert torch.equal(pixels[row, t], patch)


def test_sampled_frames_fill_the_temporal_pairs(video_processor):
    video = make_video(60, 56, 56)  # 2 s at 30 fps
    out = video_processor(video, fps=30)
    indices = [0, 15, 30, 45, 59, 59]
    assert out.video_grid_thw.tolist() == [[3, 4, 4]]
    assert np.array_equal(decoded_frames(out), video[indices])
    assert out.timestamps == [[0, 1, 1]]  # frames 0, 30, 59 at 30 fps, whole seconds


def test_timestamps_of_a_ten_second_clip(video_processor):
    out = video_processor(make_video(300, 56, 56), fps=30)  # samples 0, 15, ..., 285, 299, 299
    assert out.video_grid_thw[0, 0] == 11
    assert out.timestamps == [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9]]


def test_without_fps_sampling_is_refused_and_timestamps_assume_24(video_processor):
    video = make_video(50, 56, 56)
    with pytest.raises(ValueError, match=r"fps \(the source frame rate\) is needed"):
        video_processor(video)
    with pytest.warns(UserWarning, match="assuming 24 frames per second"):
        out = video_processor(video, sample_frames=False)
    assert out.timestamps == [[0] * 12 + [1] * 12 + [2]]  # int(2g / 24) for the 25 groups


def test_odd_frame_count_repeats_the_last_frame(video_processor):
    video = make_video(5, 56, 56)
    out = video_processor(video, sample_frames=False, fps=1)
    assert out.video_grid_thw.tolist() == [[3, 4, 4]]
    assert np.array_equal(decoded_frames(out), video[[0, 1, 2, 3, 4, 4]])
    assert out.timestamps == [[0, 2, 4]]


def test_a_two_frame_still_equals_the_image_processor():
    # The shared path: an image is a clip whose one frame is duplicated. Image output = transformers'.
    with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as image:
        photo = image.convert("RGB")
    video = Glm4vVideoProcessor()([photo, photo], sample_frames=False, fps=1)
    image = Glm4vImageProcessor()(photo)
    assert torch.equal(video.pixel_values_videos, image.pixel_values)
    assert torch.equal(video.video_grid_thw, image.image_grid_thw)


def test_input_forms_agree(video_processor):
    video = make_video(10, 60, 90)
    reference = video_processor(video, fps=5)
    as_tensor = video_processor(torch.from_numpy(video).permute(0, 3, 1, 2), fps=5)
    as_images = video_processor([Image.fromarray(frame) for frame in video], fps=5)
    for out in (as_tensor, as_images):
        assert torch.equal(out.pixel_values_videos, reference.pixel_values_videos)
        assert torch.equal(out.video_grid_thw, reference.video_grid_thw) and out.timestamps == reference.timestamps


def test_batch_of_videos_concatenates(video_processor):
    first, second = make_video(60, 56, 56), make_video(8, 84, 112)
    out = video_processor([first, second], fps=[30, 2])
    alone = [video_processor(first, fps=30), video_processor(second, fps=2)]
    assert torch.equal(out.pixel_values_videos, torch.cat([a.pixel_values_videos for a in alone]))
    assert torch.equal(out.video_grid_thw, torch.cat([a.video_grid_thw for a in alone]))
    assert out.timestamps == alone[0].timestamps + alone[1].timestamps


@pytest.mark.parametrize("videos, kwargs, error, message", [
    (np.zeros((0, 56, 56, 3), np.uint8), {"fps": 30}, ValueError, r"video is empty \(0 frames\)"),
    ([[]], {"fps": 30}, ValueError, r"video is empty \(0 frames\)"),
    ([], {"fps": 30}, ValueError, "no videos given"),
    (np.zeros((56, 56, 3), np.uint8), {"fps": 30}, ValueError, r"\(T, H, W, C\) numpy array .*got shape \(56, 56, 3\)"),
    (np.zeros((4, 56, 56, 3), np.float32), {"fps": 30}, TypeError, "uint8 .* got dtype float32"),
    (torch.zeros(4, 56, 56, 3, dtype=torch.uint8), {"fps": 30}, ValueError, r"\(C, H, W\) torch tensor"),
    ([np.zeros((56, 56, 3), np.uint8), np.zeros((84, 56, 3), np.uint8)], {"fps": 1}, ValueError,
     "all frames of a video must have the same size"),
    ([make_video(4, 56, 56)] * 2, {"fps": [30]}, ValueError, "got 2 videos but 1 values for fps"),
    (make_video(4, 56, 56), {"fps": 30, "return_tensors": "np"}, ValueError, "only return_tensors='pt'"),
    (make_video(4, 20, 5000), {"fps": 30}, ValueError, "aspect ratio must be smaller than 200"),
])
def test_rejects_bad_videos(video_processor, videos, kwargs, error, message):
    with pytest.raises(error, match=message):
        video_processor(videos, **kwargs)


def test_load_video_reads_frames_and_metadata(video_processor, tmp_path):
    video = make_video(12, 56, 56)
    write_video(tmp_path / "clip.mov", video, fps=6)
    frames, metadata = load_video(tmp_path / "clip.mov")
    assert np.array_equal(frames, video) and metadata == {"fps": 6.0, "duration": 2.0}
    out = video_processor(frames, **metadata)  # 2 s -> 4 samples at ceil(3 i) = 0, 3, 6, 9
    assert np.array_equal(decoded_frames(out), video[[0, 3, 6, 9]]) and out.timestamps == [[0, 1]]


def test_load_video_names_an_unreadable_file(tmp_path):
    pytest.importorskip("av")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    with pytest.raises(ValueError, match="cannot read video file .*broken.mp4"):
        load_video(broken)
    with pytest.raises(ValueError, match="cannot read video file .*missing.mp4"):
        load_video(tmp_path / "missing.mp4")


def test_load_video_without_pyav_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "av", None)  # as if PyAV were not installed
    with pytest.raises(ImportError, match="pip install av"):
        load_video(tmp_path / "clip.mp4")


# ---- bad frame rates and settings
@pytest.mark.parametrize("fps", [float("nan"), float("inf"), 0, -1, "30"])
def test_video_fps_must_be_a_finite_positive_number(fps):
    video = np.zeros((4, 28, 28, 3), np.uint8)
    for sample_frames in (True, False):
        with pytest.raises(ValueError, match=f"fps must be the source frame rate, a finite number > 0; got {fps!r}"):
            Glm4vVideoProcessor()(video, fps=fps, sample_frames=sample_frames)


def test_video_fps_too_small_to_date_the_frames():
    for sample_frames in (True, False):
        with pytest.raises(ValueError, match=r"fps=5e-324 puts 4 frames at an infinite time"):
            Glm4vVideoProcessor()(np.zeros((4, 28, 28, 3), np.uint8), fps=5e-324, sample_frames=sample_frames)


@pytest.mark.parametrize("settings, message", [
    (dict(fps=0), r"fps \(frames sampled per second\), a finite number > 0; got 0"),
    (dict(max_duration=float("inf")), r"max_duration \(seconds\), a finite number > 0; got inf"),
])
def test_video_processor_settings(settings, message):
    with pytest.raises(ValueError, match=message):
        Glm4vVideoProcessor(**settings)


@given(fps=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-2, 60), st.text(max_size=3)),
       sample=st.booleans())
def test_fuzz_video_fps(fps, sample):
    video = np.zeros((6, 28, 28, 3), np.uint8)

    def check(out):
        if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
            return f"accepted fps {fps!r}"
        return check_pixels(out, "pixel_values_videos", "video_grid_thw")
    classify("video", lambda: Glm4vVideoProcessor()(video, fps=fps, sample_frames=sample), check, ("fps",))
