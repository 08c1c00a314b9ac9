"""Video preprocessing for GLM-4.1V and GLM-4.6V: frames in, patch rows and prompt timestamps out.

Counterpart of transformers' `Glm4vVideoProcessor` plus the timestamp part of `Glm4vProcessor`.
transformers' video processor needs torchvision, so this module is checked against hand-computed
expectations instead. It resizes with PIL bicubic like the image processor (transformers' video path
uses torchvision's bicubic, which can differ by a rounding step per pixel).

One video of T0 frames, H×W, at `fps` frames per second:

    (T0, H, W, C) uint8 numpy array / (T0, C, H, W) uint8 tensor / list of frames (anything to_rgb takes)
      -> sample_frame_indices        T frames: 2 per second, at most 300 s worth, T even
      -> Glm4vImageProcessor.encode_frames, with ONE smart_resize budget for the whole clip
                                     (T/2 · gh · gw, 1176) float32

Rows are ordered (temporal group, window row, window col, row in window, col in window); the two
temporal slices inside a row are consecutive sampled frames. Outputs: `pixel_values_videos`
(N, 1176), `video_grid_thw` (num_videos, 3) int64 = [T/2, gh, gw] per video, and `timestamps`: per
video, the whole second of the first frame of each temporal group (the prompt writes it after the
group's image tokens).

GLM-4.6V (`Glm46VVideoProcessor`, transformers' `Glm46VVideoProcessor`): the frames are chosen by the
clip's duration (`sample_frame_indices_by_duration`: 6, 2 or 1 frames per second, at most 640 frames
of the first 2400 s), and the timestamps are seconds with one decimal ("3.5 seconds" in the prompt).
"""

import math
import warnings
from pathlib import Path

import numpy as np
import torch

from ..base.checks import is_number, read_json
from .feature import BatchFeature
from .image import CLIP_MEAN, CLIP_STD, Glm4vImageProcessor, to_rgb


def sample_frame_indices(total_frames, video_fps, fps=2, max_duration=300, duration=None):
    """Indices of the frames GLM-4.1V looks at, in order, always an even number of them.

    Clips up to `max_duration` seconds: `fps` frames per second. Longer clips: `max_duration · fps`
    frames spread evenly over the whole clip. `duration` defaults to the reference's estimate
    round((total_frames - 1) / video_fps) + 1, which counts one second more than a clip lasts.
    """
    last, duration = _last_frame_and_duration(total_frames, video_fps, duration)
    if duration <= max_duration:
        count = max(math.floor(duration * fps), 1)
        indices = [min(last, math.ceil(i * video_fps / fps)) for i in range(count)]
    elif total_frames <= max_duration * fps:
        indices = list(range(total_frames))
    else:
        seconds = np.linspace(0, duration, int(max_duration * fps))
        indices = [min(last, math.ceil(t * video_fps)) for t in seconds]
    return _even(indices)


def _last_frame_and_duration(total_frames, video_fps, duration):
    """Checked arguments of a sampler -> (index of the last frame, the clip's length in seconds).
    `duration` defaults to the reference's estimate round((total_frames - 1) / video_fps) + 1."""
    if total_frames <= 0:
        raise ValueError(f"video is empty ({total_frames} frames); it needs at least one frame")
    _check_source_rate(video_fps, total_frames, "video_fps must be the source frame rate")
    if duration is not None:
        _check_rate(duration, "duration must be the clip's length in seconds")
    return total_frames - 1, duration or round((total_frames - 1) / video_fps) + 1


def _even(indices: list[int]) -> list[int]:
    indices = list(dict.fromkeys(indices))  # drop repeats (clamped or too-close samples), keep order
    if len(indices) % 2:
        indices.append(indices[-1])  # the last temporal pair needs two frames: repeat the last one
    return indices


def load_video(path):
    """Decode a video file with PyAV -> ((T, H, W, 3) uint8 frames, {"fps": ..., "duration": ...}).

    Decodes every frame into memory (fine for short clips). Pass the dict on:
    `processor(frames, **metadata)`.
    """
    try:
        import av
    except ImportError as error:
        raise ImportError("reading video files needs PyAV, an optional dependency: pip install av") from error
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError(f"{path} has no video stream")
            stream = container.streams.video[0]
            frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
            fps = float(stream.average_rate or 0)
    except (OSError, av.FFmpegError) as error:
        raise ValueError(f"cannot read video file {path}: {error}") from error
    if not frames or not fps:
        raise ValueError(f"video file {path} has no decodable frames or no frame rate")
    # transformers' PyAV reader also takes duration = frame count / frame rate.
    return np.stack(frames), {"fps": fps, "duration": len(frames) / fps}


def _is_frame(item):
    if isinstance(item, (np.ndarray, torch.Tensor)):
        return item.ndim == 3
    return not isinstance(item, (list, tuple))


def _check_video(video):
    if isinstance(video, (np.ndarray, torch.Tensor)):
        layout = "(T, C, H, W) torch tensor" if isinstance(video, torch.Tensor) else "(T, H, W, C) numpy array"
        if video.ndim != 4:
            raise ValueError(f"a video must be a {layout} or a list of frames, got shape {tuple(video.shape)}")
        if video.dtype != (torch.uint8 if isinstance(video, torch.Tensor) else np.uint8):
            raise TypeError(f"a video must be a uint8 {layout} with values 0..255, got dtype {video.dtype}")
    elif not isinstance(video, (list, tuple)):
        raise TypeError(f"a video must be an array, a tensor or a list of frames, got {type(video).__name__}")
    if len(video) == 0:
        raise ValueError("video is empty (0 frames); it needs at least one frame")


def _per_video(value, count, name):
    values = list(value) if isinstance(value, (list, tuple)) else [value] * count
    if len(values) != count:
        raise ValueError(f"got {count} videos but {len(values)} values for {name}; pass one per video")
    return values


class Glm4vVideoProcessor(Glm4vImageProcessor):
    """Videos -> `pixel_values_videos`, `video_grid_thw` and per-video `timestamps`.

    Defaults are the checkpoint's video_preprocessor_config.json: the same pipeline as images with a
    pixel budget of 47,040,000 for all frames of a clip together, sampled at 2 fps over at most 300 s.
    """

    config_name = "video_preprocessor_config.json"
    type_key = "video_processor_type"
    config_keys = Glm4vImageProcessor.config_keys + ("fps", "max_duration")

    def __init__(self, min_pixels=12544, max_pixels=47040000, patch_size=14, temporal_patch_size=2,
                 merge_size=2, image_mean=CLIP_MEAN, image_std=CLIP_STD, fps=2, max_duration=300):
        super().__init__(min_pixels, max_pixels, patch_size, temporal_patch_size, merge_size, image_mean, image_std)
        _check_rate(fps, "fps (frames sampled per second)")
        _check_rate(max_duration, "max_duration (seconds)")
        self.fps, self.max_duration = fps, max_duration

    def __call__(self, videos, fps=None, duration=None, sample_frames=True, return_tensors="pt"):
        """`videos`: one video or a list of them; `fps` (source frame rate) and `duration` (seconds):
        one value, or a list with one per video.

        With `sample_frames=True` the source fps is required. With `sample_frames=False` every frame
        is used (an odd count gets its last frame repeated) and fps only dates the frames: without
        it 24 is assumed, with a warning, as transformers does.
        """
        if return_tensors != "pt":
            raise ValueError(f"only return_tensors='pt' is supported, got {return_tensors!r}")
        is_one_video = isinstance(videos, (np.ndarray, torch.Tensor)) or (
            isinstance(videos, (list, tuple)) and len(videos) > 0 and _is_frame(videos[0]))
        videos = [videos] if is_one_video else list(videos)
        if not videos:
            raise ValueError("no videos given; pass one video or a non-empty list of videos")
        rows, grids, timestamps = [], [], []
        for video, video_fps, seconds in zip(videos, _per_video(fps, len(videos), "fps"),
                                             _per_video(duration, len(videos), "duration")):
            _check_video(video)
            if sample_frames:
                if video_fps is None:
                    raise ValueError(f"fps (the source frame rate) is needed to sample {self.fps} frames per "
                                     "second; pass fps=..., or sample_frames=False to use every frame")
                indices = self.sample(len(video), video_fps, seconds)
            else:
                indices = list(range(len(video)))
                if video_fps is None:
                    warnings.warn("no fps given: assuming 24 frames per second for the frame timestamps")
                    video_fps = 24
                _check_source_rate(video_fps, len(video), "fps must be the source frame rate")
            frames = [to_rgb(video[i]) for i in indices]
            if len({frame.size for frame in frames}) > 1:
                raise ValueError(f"all frames of a video must have the same size, got "
                                 f"{sorted({frame.size for frame in frames})} (width, height)")
            video_rows, grid = self.encode_frames(frames)
            rows.append(video_rows)
            grids.append(grid)
            # One timestamp per temporal group: the time of its first frame, as the prompt shows it.
            timestamps.append([self.frame_time(i, video_fps) for i in indices[::self.temporal_patch_size]])
        return BatchFeature(pixel_values_videos=torch.cat(rows), video_grid_thw=torch.stack(grids),
                            timestamps=timestamps)


    # ------------------------------------------------------------ what GLM-4.6V changes (Glm46VVideoProcessor)
    def sample(self, total_frames: int, video_fps, duration=None) -> list[int]:
        """The frames to keep: `fps` per second over at most `max_duration` seconds."""
        return sample_frame_indices(total_frames, video_fps, self.fps, self.max_duration, duration)

    @staticmethod
    def frame_time(index: int, video_fps):
        """When frame `index` was taken, as the prompt tells the model: whole seconds."""
        return int(index / video_fps)

    @staticmethod
    def timestamp_text(seconds) -> str:
        """The text after a temporal group's image tokens: "3"."""
        return str(seconds)


# GLM-4.6V's rates: up to 30 s of clip, 3 temporal groups (6 frames) per second; up to 300 s, 1; longer, 0.5
GROUP_RATES = ((30, 3), (300, 1), (math.inf, 0.5))
MAX_SECONDS, MAX_FRAMES = 2400, 640  # GLM-4.6V looks at most at the first 2400 s, in at most 640 frames


def sample_frame_indices_by_duration(total_frames, video_fps, temporal_patch_size=2, duration=None) -> list[int]:
    """The frames GLM-4.6V looks at (transformers' `Glm46VVideoProcessor.sample_frames`): a rate chosen
    by the clip's length (GROUP_RATES), capped at MAX_FRAMES frames and MAX_SECONDS seconds.

    Frames are taken in time order whenever the clip reaches the next sampling instant; if that gives
    fewer frames than the rate asks for (a clip with fewer frames than that), they are spread evenly
    over the part it covered instead, and if more, over the whole clip. Repeats are dropped and an odd
    count gets its last frame repeated, as in `sample_frame_indices`."""
    last, duration = _last_frame_and_duration(total_frames, video_fps, duration)
    seconds = min(duration, MAX_SECONDS)
    rate = next(rate for longest, rate in GROUP_RATES if seconds <= longest)
    wanted = min(int(seconds * rate * temporal_patch_size), MAX_FRAMES)
    if total_frames < wanted:
        indices = np.linspace(0, last, wanted, dtype=int).tolist()
    else:
        indices, instant = [], 0.0
        for i in range(total_frames):
            if i / video_fps >= instant:
                indices.append(i)
                instant += 1 / (temporal_patch_size * rate)
                if instant >= int(duration):
                    break
    if len(indices) < wanted:
        start, end = (indices[0], indices[-1]) if indices else (0, last)
        indices = np.linspace(start, end, wanted, dtype=int).tolist()
    elif len(indices) > wanted:
        indices = np.linspace(0, last, wanted, dtype=int).tolist()
    return _even(indices)


class Glm46VVideoProcessor(Glm4vVideoProcessor):
    """GLM-4.6V's video processing (transformers' `Glm46VVideoProcessor` and the timestamps of
    `Glm46VProcessor`): the same pixels per frame as GLM-4.1V, but the frames are chosen by the clip's
    duration (`sample_frame_indices_by_duration`; the `fps` and `max_duration` settings are not used)
    and each temporal group's time is written with one decimal: "3.5 seconds". Chosen by a checkpoint
    whose video_preprocessor_config.json names it (`video_processor_type`)."""

    def sample(self, total_frames: int, video_fps, duration=None) -> list[int]:
        return sample_frame_indices_by_duration(total_frames, video_fps, self.temporal_patch_size, duration)

    @staticmethod
    def frame_time(index: int, video_fps):
        return index / video_fps

    @staticmethod
    def timestamp_text(seconds) -> str:
        return f"{seconds:.1f} seconds"


VIDEO_PROCESSORS = {cls.__name__: cls for cls in (Glm4vVideoProcessor, Glm46VVideoProcessor)}


def video_processor_for(directory: Path) -> Glm4vVideoProcessor | None:
    """The video processor of a checkpoint directory: the class its video_preprocessor_config.json names
    (GLM-4.6V's names its own; a file that names none: Glm4vVideoProcessor; a class minglm4v does not have:
    a clear error), or None when the directory has no such file."""
    path = directory / Glm4vVideoProcessor.config_name
    if not path.is_file():
        return None
    kind = read_json(path, "a video preprocessor config").get(Glm4vVideoProcessor.type_key, "Glm4vVideoProcessor")
    if kind not in VIDEO_PROCESSORS:  # another sampler: processing its videos as GLM-4.1V's would be silently wrong
        raise ValueError(f"{path} names the video processor {kind!r}; minglm4v implements {sorted(VIDEO_PROCESSORS)}. "
                         f"Use a GLM-4.1V or GLM-4.6V checkpoint, or delete the file to process images only")
    return VIDEO_PROCESSORS[kind].from_pretrained(directory)


def _check_rate(value, what: str) -> None:
    if not is_number(value) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"{what}, a finite number > 0; got {value!r}")


def _check_source_rate(fps, total_frames: int, what: str) -> None:
    _check_rate(fps, what)
    if not math.isfinite(total_frames / fps):  # a tiny rate would date the frames at infinite seconds
        raise ValueError(f"{what}; fps={fps!r} puts {total_frames} frames at an infinite time")
