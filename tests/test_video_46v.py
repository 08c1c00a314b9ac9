"""GLM-4.6V's video processing (Glm46VVideoProcessor) against transformers' glm46v: the frames chosen by
duration (transformers' own sample_frames, run from its source: its module needs torchvision, which the
oracle environment lacks), the prompt's "x.x seconds" timestamps (Glm46VProcessor.replace_video_token),
image pixels (Glm46VImageProcessorPil); selected by the checkpoint's video_preprocessor_config.json."""

import ast
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers import REPO

from minglm4v import AutoProcessor, Glm4vImageProcessor, Glm4vProcessor, Glm4vVideoProcessor
from minglm4v.processing.video import Glm46VVideoProcessor, sample_frame_indices_by_duration


def transformers_sample_frames():
    """Glm46VVideoProcessor.sample_frames, compiled from transformers' file on its own."""
    import transformers.models.glm46v as package
    from transformers.video_utils import VideoMetadata
    path = Path(package.__file__).parent / "video_processing_glm46v.py"
    tree = ast.parse(path.read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Glm46VVideoProcessor")
    method = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "sample_frames")
    namespace = {"np": np, "VideoMetadata": VideoMetadata}
    exec(compile(ast.Module(body=[method], type_ignores=[]), str(path), "exec"), namespace)
    return lambda frames, fps, duration: namespace["sample_frames"](
        SimpleNamespace(temporal_patch_size=2), VideoMetadata(total_num_frames=frames, fps=fps, duration=duration))


CLIPS = [(300, 30, 10.0), (25, 5, 5.0), (31, 30, None), (2400, 24, 100.0), (4000, 10, 400.0), (3000, 1, 3000.0),
         (90, 30, 3.0), (7, 2.5, None), (1, 30, None), (1200, 29.97, 40.04)]


@pytest.mark.parametrize("frames, fps, duration", CLIPS)
def test_frames_chosen_by_duration_equal_transformers(frames, fps, duration):
    want = transformers_sample_frames()(frames, fps, duration).tolist()
    got = sample_frame_indices_by_duration(frames, fps, 2, duration)
    assert got == want
    assert len(got) % 2 == 0 and len(got) <= 640


def model_dir_46v(tmp_path) -> Path:
    """A processor directory as GLM-4.6V's: the fixture tokenizer, the image processor, and a video
    preprocessor config naming Glm46VVideoProcessor."""
    for path in (REPO / "data" / "tokenizer").iterdir():
        shutil.copy(path, tmp_path / path.name)
    Glm4vImageProcessor().save_pretrained(tmp_path)
    Glm46VVideoProcessor().save_pretrained(tmp_path)
    return tmp_path


def test_the_checkpoint_files_select_glm46v_and_the_prompt_equals_transformers(tmp_path):
    from transformers.models.glm46v.processing_glm46v import Glm46VProcessor
    from transformers.video_utils import VideoMetadata
    directory = model_dir_46v(tmp_path)
    assert json.loads((directory / "video_preprocessor_config.json").read_text())["video_processor_type"] == \
        "Glm46VVideoProcessor"
    processor = AutoProcessor.from_pretrained(directory)
    assert type(processor.video_processor) is Glm46VVideoProcessor
    video = np.random.default_rng(0).integers(0, 256, (48, 56, 84, 3), dtype=np.uint8)  # 48 frames, 4 s at 12 fps
    out = processor(text="<|begin_of_video|><|video|><|end_of_video|> what happens?", videos=[video], fps=12.0)
    indices = sample_frame_indices_by_duration(48, 12.0, 2)
    reference = Glm46VProcessor.__new__(Glm46VProcessor)
    reference.image_token, reference.video_processor = "<|image|>", SimpleNamespace(merge_size=2)
    expected = reference.replace_video_token({"video_grid_thw": out["video_grid_thw"],
                                              "video_metadata": [VideoMetadata(48, fps=12.0, frames_indices=indices)]},
                                             0)
    text = processor.tokenizer.decode(out["input_ids"][0].tolist(), skip_special_tokens=False)
    assert "0.0 seconds" in expected and "1.8 seconds" in expected
    assert text == f"<|begin_of_video|>{expected}<|end_of_video|> what happens?"
    # the pixels are GLM-4.1V's pipeline on the chosen frames
    same = Glm4vVideoProcessor()(video[indices], fps=12.0, sample_frames=False)
    assert torch.equal(out["pixel_values_videos"], same["pixel_values_videos"])


def test_glm46v_image_pixels_equal_transformers():
    from PIL import Image
    from transformers.models.glm46v.image_processing_pil_glm46v import Glm46VImageProcessorPil
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (150, 230, 3), dtype=np.uint8))
    ours = Glm4vImageProcessor()(image)
    theirs = Glm46VImageProcessorPil()(images=[image], return_tensors="pt")
    assert torch.equal(ours["image_grid_thw"], theirs["image_grid_thw"])
    assert torch.equal(ours["pixel_values"], theirs["pixel_values"])


def test_glm41v_directories_keep_glm41v_video_processing(tmp_path):
    """GLM-4.1V and GLM-4.6V-Flash (a dense glm4v) files name Glm4vVideoProcessor: whole seconds."""
    for path in (REPO / "data" / "tokenizer").iterdir():
        shutil.copy(path, tmp_path / path.name)
    Glm4vImageProcessor().save_pretrained(tmp_path)
    Glm4vVideoProcessor().save_pretrained(tmp_path)
    processor = Glm4vProcessor.from_pretrained(tmp_path)
    assert type(processor.video_processor) is Glm4vVideoProcessor
    video = np.zeros((8, 56, 56, 3), dtype=np.uint8)
    out = processor(text="<|begin_of_video|><|video|><|end_of_video|>", videos=[video], fps=2.0)
    text = processor.tokenizer.decode(out["input_ids"][0].tolist(), skip_special_tokens=False)
    assert "<|end_of_image|>1<|begin_of_image|>" in text and "seconds" not in text


def test_a_video_processor_minglm4v_does_not_have_is_refused_by_name(tmp_path):
    directory = model_dir_46v(tmp_path)
    config = directory / "video_preprocessor_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "video_processor_type": "Glm5VideoProcessor"}))
    with pytest.raises(ValueError, match="names the video processor 'Glm5VideoProcessor'; minglm4v implements"):
        AutoProcessor.from_pretrained(directory)
    config.write_text(json.dumps({k: v for k, v in json.loads(config.read_text()).items()
                                  if k != "video_processor_type"}))
    assert type(AutoProcessor.from_pretrained(directory).video_processor) is Glm4vVideoProcessor
