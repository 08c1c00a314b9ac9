"""Image preprocessing for GLM-4.1V: pictures in, vision-tower patch rows out.

Counterpart of transformers' `Glm4vImageProcessorPil` (the PIL backend); the output is identical.

One image of size H×W, resized to h̄×w̄ = smart_resize(...), patch grid gh = h̄/14, gw = w̄/14:

    path / PIL image (any mode) / (H, W, C) uint8 array / (C, H, W) uint8 tensor
      -> to_rgb                      RGB PIL image
      -> PIL bicubic resize          (1, 3, h̄, w̄) uint8
      -> /255, CLIP mean/std         (1, 3, h̄, w̄) float32
      -> patchify                    (gh·gw, 1176) float32, 1176 = 3 channels · 2 frames · 14 · 14

A batch concatenates the rows of all images: `pixel_values` (N, 1176) float32 and
`image_grid_thw` (num_images, 3) int64, one [1, gh, gw] per image. The video processor reuses
`encode_frames`; an image is a one-frame clip.

Colour conversion follows transformers for in-memory images:
* an alpha band (RGBA, LA, PA, or a `transparency` key in P/L/RGB images) is composited onto white;
* every other mode goes through PIL's `convert("RGB")`. For the 16/32-bit modes (I;16, I, F) that
  *clips* values to 0..255 instead of rescaling them, so a 16-bit scan comes out almost white;
  transformers does the same. Scale such images to 8 bits yourself first. A float (F) image holding
  NaN or ±inf is refused (the conversion would make them 0 or 255 silently);
* a numpy array whose first axis is 1 or 3 and last axis 1, 3 or 4 is refused as ambiguous: numpy
  images are (H, W, C) here, but transformers reads such an array as (C, H, W).
* Image files (a `str` or `Path`) are opened with PIL and turned upright by their EXIF orientation,
  as transformers does, but then treated like any other PIL image. transformers drops the alpha band
  of files it opens (no white background), so transparent files given *by path* differ; a file gives
  the same pixels here whether it is passed by path or opened first.
"""

import json
import math
import warnings
from pathlib import Path

import numpy as np
import torch
from einops import rearrange
from PIL import Image, ImageOps

from ..base.checks import is_number, positive_int, read_json
from ..base.hub import check_kwargs, resolve_directory
from .feature import BatchFeature

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# Upper bound on max_pixels: a settings file cannot make one call allocate more than ~2.4 GB of pixel
# rows (3 float32 channels per pixel). The checkpoint's budgets are 9.6 M (images) and 47 M (videos).
PIXEL_LIMIT = 200_000_000

# Steps the checkpoint's config always switches on; a config that turns one off (or picks another
# filter) asks for a pipeline this module does not implement.
_FIXED_STEPS = {"do_resize": True, "resample": 3, "do_rescale": True, "rescale_factor": 1 / 255,
                "do_normalize": True, "do_convert_rgb": True}


def smart_resize(num_frames, height, width, temporal_factor=2, factor=28,
                 min_pixels=112 * 112, max_pixels=9633792):
    """(height, width) a clip of `num_frames` frames is resized to.

    Both sides become multiples of `factor` (one 2×2 merge window of 14-pixel patches), the aspect
    ratio is kept as well as rounding allows, and `num_frames · h · w` is brought inside
    [min_pixels, max_pixels]. Note the budget counts frames: a still image counts as 2.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"image has zero size (height={height}, width={width}); it needs at least 1×1 pixels")
    if num_frames < temporal_factor:
        raise ValueError(f"num_frames={num_frames} is smaller than temporal_factor={temporal_factor}; "
                         f"a clip needs at least {temporal_factor} frames (a still image counts as {temporal_factor})")
    if height < factor or width < factor:
        # Too small for one merge window: scale up; int() truncates (3 px -> 27, not 28), as the reference.
        scale = max(factor / height, factor / width)
        height, width = int(height * scale), int(width * scale)
    ratio = max(height, width) / min(height, width)
    if ratio > 200:
        raise ValueError(f"absolute aspect ratio must be smaller than 200, got {ratio} "
                         f"({height}×{width} after upscaling); crop or pad the image first")
    # round() is Python's: exact halves go to the even multiple, as in the reference.
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    t_bar = round(num_frames / temporal_factor) * temporal_factor
    jumped = False  # rounding to whole windows carried the size from one side of the range to the other
    if t_bar * h_bar * w_bar > max_pixels:
        beta = math.sqrt(num_frames * height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
        jumped = t_bar * h_bar * w_bar < min_pixels
    elif t_bar * h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (num_frames * height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
        jumped = t_bar * h_bar * w_bar > max_pixels
    if jumped:
        # why: with min_pixels and max_pixels close together (the micro model's 96,800..100,352) rounding
        # both sides up (or down) can overshoot the range; transformers then returns a size outside it
        # (224x252 for a 64x80 picture). The nearest size inside the range is taken instead.
        h_bar, w_bar = _nearest_size_in_range(num_frames, height, width, t_bar, factor, min_pixels, max_pixels)
    return h_bar, w_bar


def _nearest_size_in_range(num_frames, height, width, t_bar, factor, min_pixels, max_pixels):
    """The (h, w) on the `factor` grid with min_pixels <= t_bar·h·w <= max_pixels nearest (in log scale) to
    the picture scaled to the middle of the range."""
    scale = math.sqrt((min_pixels + max_pixels) / 2 / (num_frames * height * width))
    ideal_h, ideal_w = height * scale, width * scale
    best, best_distance = None, math.inf
    for h in range(factor, max_pixels // (t_bar * factor) + 1, factor):
        low = max(factor, math.ceil(min_pixels / (t_bar * h) / factor) * factor)
        high = math.floor(max_pixels / (t_bar * h) / factor) * factor
        nearest = (math.floor(ideal_w / factor) * factor, math.ceil(ideal_w / factor) * factor)
        for w in {min(max(w, low), high) for w in nearest} if low <= high else ():
            distance = math.log(h / ideal_h) ** 2 + math.log(w / ideal_w) ** 2
            if distance < best_distance:
                best, best_distance = (h, w), distance
    if best is None:
        raise ValueError(f"cannot resize {num_frames} frame(s) of {height}x{width} into [min_pixels={min_pixels}, "
                         f"max_pixels={max_pixels}]: no size on the {factor}-pixel grid has a pixel count in that "
                         f"range ({t_bar} frames x h x w); widen the range between min_pixels and max_pixels")
    return best


def open_image(path):
    """Open an image file, upright by its EXIF orientation; errors name the file."""
    try:
        with warnings.catch_warnings():
            # PIL only warns between 1× and 2× its pixel limit and raises above; treat both alike.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()
                return ImageOps.exif_transpose(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ValueError(
            f"image file {path} is over PIL's decompression-bomb limit "
            f"(PIL.Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS}): {error}. If you trust the file, "
            "raise the limit before loading it: `PIL.Image.MAX_IMAGE_PIXELS = None` (or a larger number)"
        ) from error
    except Exception as error:  # PIL reports a damaged file as OSError, SyntaxError (bad EXIF), struct.error, ...
        raise ValueError(f"cannot read image file {path}: {type(error).__name__}: {error}") from error


def _array_to_pil(array, channels_first):
    layout = "(C, H, W) torch tensor" if channels_first else "(H, W, C) numpy array"
    if array.ndim != 3 or array.shape[0 if channels_first else -1] not in (1, 3, 4):
        raise ValueError(f"expected an image as a {layout} with C = 1, 3 or 4 (4 = RGBA), got shape "
                         f"{tuple(array.shape)}; numpy images are channels-last, torch images channels-first")
    if not channels_first and array.shape[0] in (1, 3) and array.shape[-1] in (1, 3, 4):
        # why: transformers reads any array whose first axis is 1 or 3 as (C, H, W), this module reads numpy
        # as (H, W, C): the two would see different pictures, so neither reading is guessed.
        raise ValueError(f"a numpy image of shape {tuple(array.shape)} is ambiguous: read as (H, W, C) here, but "
                         f"transformers reads a first axis of 1 or 3 as the channels (C, H, W); pass "
                         f"PIL.Image.fromarray(array) for (H, W, C) or torch.from_numpy(array) for (C, H, W)")
    dtype = str(array.dtype).removeprefix("torch.")  # numpy or torch
    if dtype != "uint8":
        raise TypeError(f"expected a uint8 {layout} with values 0..255, got dtype {dtype}; "
                        "convert floats in [0, 1] with (x * 255).round() and a cast to uint8")
    hwc = np.moveaxis(np.asarray(array), 0, -1) if channels_first else array
    return Image.fromarray(np.ascontiguousarray(hwc[..., 0] if hwc.shape[-1] == 1 else hwc))


def to_rgb(image):
    """Any supported image input -> RGB PIL image (see the module docstring for the mode rules)."""
    if isinstance(image, (str, Path)):
        image = open_image(image)
    elif isinstance(image, torch.Tensor):
        if image.is_meta:
            raise ValueError("the image tensor is on the meta device: it has a shape but no pixel values")
        image = _array_to_pil(image.detach().cpu(), channels_first=True)
    elif isinstance(image, np.ndarray):
        image = _array_to_pil(image, channels_first=False)
    elif not isinstance(image, Image.Image):
        raise TypeError(f"expected a PIL image, a path, an (H, W, C) uint8 numpy array or a (C, H, W) "
                        f"uint8 torch tensor, got {type(image).__name__}")
    if image.width == 0 or image.height == 0:
        raise ValueError(f"image has zero size ({image.width}×{image.height} pixels)")
    if image.mode == "F" and not np.isfinite(np.asarray(image)).all():
        raise ValueError("the PIL image of mode 'F' (32-bit float) holds NaN or infinite values, which the "
                         "conversion to RGB would turn into 0 or 255 without a word; replace them first "
                         "(e.g. np.nan_to_num on the array) or pass 8-bit pixels")
    try:
        if "A" in image.getbands() or "transparency" in image.info:
            # The RGB stored under alpha = 0 is arbitrary (often black): show see-through pixels as white.
            rgba = image.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(white, rgba).convert("RGB")
        return image.convert("RGB")
    except (ValueError, OSError) as error:
        raise ValueError(f"cannot convert a PIL image of mode {image.mode} to RGB: {error}") from error


def patchify(frames, patch_size=14, temporal_patch_size=2, merge_size=2):
    """(T, C, H, W) frames -> rows (grid_t·gh·gw, C·temporal_patch_size·patch_size²) and grid [t, gh, gw].

    Rows come in merge-window order (temporal group, window row, window col, row in window, col in
    window), so every merge_size² consecutive rows form one window the merger fuses into one token.
    Inside a row the order is (channel, frame, pixel row, pixel col), the Conv3d weight's layout.
    """
    window = patch_size * merge_size
    if frames.shape[-2] % window or frames.shape[-1] % window:
        raise ValueError(f"frame size {tuple(frames.shape[-2:])} must be a multiple of {window} "
                         "(patch_size · merge_size) on both sides; resize with smart_resize first")
    # The Conv3d always looks at `temporal_patch_size` frames at once. A clip that falls short
    # (a still image has 1) is padded by repeating its last frame: an image becomes 2 copies of itself.
    missing = -frames.shape[0] % temporal_patch_size
    frames = torch.cat([frames, frames[-1:].expand(missing, -1, -1, -1)])
    rows = rearrange(frames, "(gt tp) c (bh mi p1) (bw mj p2) -> (gt bh bw mi mj) (c tp p1 p2)",
                     tp=temporal_patch_size, mi=merge_size, mj=merge_size, p1=patch_size, p2=patch_size)
    grid = torch.tensor([frames.shape[0] // temporal_patch_size, frames.shape[-2] // patch_size,
                         frames.shape[-1] // patch_size])
    return rows, grid


def unpatchify(pixel_values, grid_thw, patch_size=14, temporal_patch_size=2, merge_size=2):
    """Undo `patchify`: rows of all images/videos -> list of (grid_t·temporal_patch_size, C, H, W).
    `grid_thw` is (n, 3), or the single (3,) grid `patchify` returns."""
    grid_thw = torch.as_tensor(grid_thw).reshape(-1, 3)
    counts = grid_thw.prod(-1).tolist()
    if sum(counts) != pixel_values.shape[0]:
        raise ValueError(f"image_grid_thw describes {sum(counts)} patches but pixel_values has "
                         f"{pixel_values.shape[0]} rows; pass the grid that came with these pixel values")
    return [rearrange(rows, "(gt bh bw mi mj) (c tp p1 p2) -> (gt tp) c (bh mi p1) (bw mj p2)",
                      gt=t, bh=h // merge_size, bw=w // merge_size, mi=merge_size, mj=merge_size,
                      tp=temporal_patch_size, p1=patch_size, p2=patch_size)
            for rows, (t, h, w) in zip(pixel_values.split(counts), grid_thw.tolist())]


def unnormalize(pixels, image_mean=CLIP_MEAN, image_std=CLIP_STD):
    """Normalised (..., 3, H, W) pixels -> [0, 1] RGB for display (undoes the CLIP normalisation)."""
    mean = torch.tensor(image_mean)[:, None, None]
    std = torch.tensor(image_std)[:, None, None]
    return (pixels * std + mean).clamp(0, 1)


class Glm4vImageProcessor:
    """Images -> `pixel_values` (N, 1176) float32 and `image_grid_thw` (num_images, 3) int64.

    Defaults are the GLM-4.1V checkpoint's preprocessor_config.json (transformers' class defaults
    differ: its longest_edge is 11,760,000).
    """

    config_name = "preprocessor_config.json"
    type_key = "image_processor_type"
    config_keys = ("patch_size", "temporal_patch_size", "merge_size", "image_mean", "image_std")

    def __init__(self, min_pixels=12544, max_pixels=9633792, patch_size=14, temporal_patch_size=2,
                 merge_size=2, image_mean=CLIP_MEAN, image_std=CLIP_STD):
        _check_settings(min_pixels, max_pixels, patch_size, temporal_patch_size, merge_size, image_mean, image_std)
        self.min_pixels, self.max_pixels = min_pixels, max_pixels
        self.patch_size, self.temporal_patch_size, self.merge_size = patch_size, temporal_patch_size, merge_size
        self.image_mean, self.image_std = tuple(image_mean), tuple(image_std)

    def __call__(self, images, return_tensors="pt"):
        """One image or a list: paths, PIL images (any mode), (H, W, C) uint8 arrays, (C, H, W) uint8 tensors."""
        if return_tensors != "pt":
            raise ValueError(f"only return_tensors='pt' is supported, got {return_tensors!r}")
        images = list(images) if isinstance(images, (list, tuple)) else [images]
        if not images:
            raise ValueError("no images given; pass one image or a non-empty list of images")
        rows, grids = zip(*(self.encode_frames([to_rgb(image)]) for image in images))
        return BatchFeature(pixel_values=torch.cat(rows), image_grid_thw=torch.stack(grids))

    def encode_frames(self, frames):
        """Equal-sized RGB PIL frames of one clip -> (rows, grid [t, gh, gw]), one size for all frames."""
        # A still image is budgeted as the temporal_patch_size frames it becomes after duplication.
        height, width = smart_resize(max(len(frames), self.temporal_patch_size), frames[0].height,
                                     frames[0].width, self.temporal_patch_size,
                                     self.patch_size * self.merge_size, self.min_pixels, self.max_pixels)
        resized = np.stack([np.asarray(f.resize((width, height), Image.Resampling.BICUBIC)) for f in frames])
        # float32 division rounds exactly like the reference's float64 rescale for uint8 inputs, and the
        # normalisation is done in float32 like the reference's: the outputs agree bit for bit.
        pixels = rearrange(torch.from_numpy(resized), "t h w c -> t c h w").float() / 255
        mean = torch.tensor(self.image_mean)[:, None, None]
        std = torch.tensor(self.image_std)[:, None, None]
        return patchify((pixels - mean) / std, self.patch_size, self.temporal_patch_size, self.merge_size)

    def to_dict(self):
        """The preprocessor config, in the hub file's format."""
        config = {key: getattr(self, key) for key in self.config_keys}
        config.update(image_mean=list(self.image_mean), image_std=list(self.image_std))
        return {"size": {"shortest_edge": self.min_pixels, "longest_edge": self.max_pixels}, **config,
                **_FIXED_STEPS, self.type_key: type(self).__name__, "processor_class": "Glm4vProcessor"}

    def save_pretrained(self, save_directory):
        """Write `config_name` in the hub format (transformers' Glm4vImageProcessorPil reads the image one)."""
        path = Path(save_directory) / self.config_name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *, revision=None, cache_dir=None, **kwargs):
        """Read `config_name` from a checkpoint directory or cached hub id (keys it lacks keep our defaults)."""
        check_kwargs(kwargs, f"{cls.__name__}.from_pretrained")
        directory = resolve_directory(pretrained_model_name_or_path, revision, cache_dir)
        path = directory / cls.config_name
        if not path.is_file():
            raise FileNotFoundError(f"no {cls.config_name} in {directory}")
        config = read_json(path, "a preprocessor config with 'size', 'patch_size', 'merge_size', ...")
        for key, expected in _FIXED_STEPS.items():
            if config.get(key, expected) != expected:
                raise ValueError(f"{path} sets {key}={config[key]!r}; only {key}={expected!r} is implemented")
        size = config.get("size", {})
        if not isinstance(size, dict):
            raise ValueError(f"{path} has 'size': {size!r}; expected {{'shortest_edge': min_pixels, "
                             f"'longest_edge': max_pixels}} (pixel counts, as in the GLM-4.1V checkpoint)")
        kwargs = {key: config[key] for key in cls.config_keys if key in config}
        if "shortest_edge" in size:
            kwargs["min_pixels"] = size["shortest_edge"]
        if "longest_edge" in size:
            kwargs["max_pixels"] = size["longest_edge"]
        return cls(**kwargs)


def _check_settings(min_pixels, max_pixels, patch_size, temporal_patch_size, merge_size, image_mean, image_std):
    for name, value in (("patch_size", patch_size), ("temporal_patch_size", temporal_patch_size),
                        ("merge_size", merge_size), ("min_pixels", min_pixels), ("max_pixels", max_pixels)):
        positive_int(value, name)
    if min_pixels > max_pixels:
        raise ValueError(f"min_pixels {min_pixels} is larger than max_pixels {max_pixels}; no size fits both")
    smallest = temporal_patch_size * (patch_size * merge_size) ** 2  # one merge window, in every frame
    if smallest > max_pixels:
        raise ValueError(f"max_pixels {max_pixels} is smaller than the smallest picture these settings make: one "
                         f"{patch_size * merge_size}x{patch_size * merge_size} window (patch_size * merge_size) "
                         f"in {temporal_patch_size} frames = {smallest} pixels; lower patch_size or merge_size")
    if max_pixels > PIXEL_LIMIT:
        raise ValueError(f"max_pixels {max_pixels} is over minglm4v's limit of {PIXEL_LIMIT} pixels per image or "
                         f"clip (about {PIXEL_LIMIT * 12 / 1e9:.1f} GB of pixel values); lower it")
    for name, values in (("image_mean", image_mean), ("image_std", image_std)):
        if not isinstance(values, (list, tuple, np.ndarray)) or len(values) != 3 or \
                not all(is_number(v) and math.isfinite(v) for v in values):
            raise ValueError(f"{name} must be 3 finite numbers (one per RGB channel), got {values!r}")
    if min(image_std) <= 0:
        raise ValueError(f"image_std must be > 0 in every channel (pixels are divided by it), got {image_std!r}")
