"""The transformers-shaped public API: the two snippets users arrive with (the GLM-4.1V test guide and
the model card's inference code) with only the import changed, and every public name and keyword."""
import json
import os

import numpy as np
import pytest
import torch
from helpers import MICRO, REPO
from PIL import Image

import minglm4v
from minglm4v import (
    AutoModelForImageTextToText,
    AutoProcessor,
    AutoTokenizer,
    BatchFeature,
    Glm4vConfig,
    Glm4vForConditionalGeneration,
    Glm4vImageProcessor,
    Glm4vProcessor,
    Glm4vTokenizer,
    Glm4vVideoProcessor,
    TextIteratorStreamer,
    TextStreamer,
    create_fake_text_inputs,
    create_multimodal_inputs,
)

PHOTO = REPO / "data" / "images" / "shapes.png"  # a blue triangle, a red circle, a yellow square
ANSWER = ("<think>3 shapes: blue triangle top left [130,160,400,430]; red circle top right [670,110,890,330]; "
          "yellow square bottom center [430,620,700,890]</think><answer>circle</answer><|user|>")
PUBLIC = ["AutoModelForImageTextToText", "AutoProcessor", "AutoTokenizer", "BatchFeature", "Glm4vConfig",
          "Glm4vForConditionalGeneration", "Glm4vImageProcessor", "Glm4vMoeConfig",
          "Glm4vMoeForConditionalGeneration", "Glm4vOutput", "Glm4vProcessor",
          "Glm4vTokenizer", "Glm4vVideoProcessor", "TextConfig", "TextIteratorStreamer", "TextStreamer", "VisionConfig",
          "create_fake_image_inputs", "create_fake_text_inputs", "create_multimodal_inputs"]


@pytest.fixture(scope="module")
def micro_model(micro):
    return micro[0]


@pytest.fixture(scope="module")
def auto_processor():
    return AutoProcessor.from_pretrained(MICRO)


def test_public_names():
    assert sorted(minglm4v.__all__) == PUBLIC
    assert all(getattr(minglm4v, name) is not None for name in PUBLIC)
    assert minglm4v.TextStreamer is TextStreamer and minglm4v.TextIteratorStreamer is TextIteratorStreamer


def test_model_card_snippet():
    """zai-org/GLM-4.1V-9B-Thinking's model card code. Changed: the import line, MODEL_PATH (the bundled
    micro model), the picture (a local file:// URL: no network) and max_new_tokens (the micro model has
    1024 positions, the real one 65536)."""
    MODEL_PATH = str(MICRO)
    messages = [
        {
            "role": "user",
            "content": [
                {
                    "type": "image",
                    "url": PHOTO.as_uri()
                },
                {
                    "type": "text",
                    "text": "describe this image"
                }
            ],
        }
    ]
    processor = AutoProcessor.from_pretrained(MODEL_PATH, use_fast=True)
    model = Glm4vForConditionalGeneration.from_pretrained(
        pretrained_model_name_or_path=MODEL_PATH,
        torch_dtype=torch.bfloat16,
        device_map="auto",
    )
    inputs = processor.apply_chat_template(
        messages,
        tokenize=True,
        add_generation_prompt=True,
        return_dict=True,
        return_tensors="pt"
    ).to(model.device)
    inputs.pop("token_type_ids", None)  # the GLM-4.5V variant of the card has this line
    generated_ids = model.generate(**inputs, max_new_tokens=512)
    output_text = processor.decode(generated_ids[0][inputs["input_ids"].shape[1]:], skip_special_tokens=False)
    assert model.dtype == torch.bfloat16 and output_text == ANSWER


def test_seed_guide_snippet():
    """The test guide's code: its config knob (sizes shrunk so the suite stays fast), fake inputs,
    forward, generate, then the "Real Usage Workflow" on a local directory. That workflow's naive prompt
    ("... <image>" as plain text) must fail with an error that points at apply_chat_template."""
    config = Glm4vConfig(
        vision_config={"hidden_size": 64, "depth": 2, "num_heads": 2},
        text_config={"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                     "num_key_value_heads": 2, "intermediate_size": 256},
    )
    model = Glm4vForConditionalGeneration(config).eval()
    text_inputs = create_fake_text_inputs(config, batch_size=2, seq_len=100)
    multimodal_inputs = create_multimodal_inputs(config, num_images=3, text_length=20)
    with torch.no_grad():
        assert model(**text_inputs).logits.shape == (2, 100, config.text_config.vocab_size)
        assert model(**multimodal_inputs).logits.shape[:2] == multimodal_inputs["input_ids"].shape
        outputs = model.generate(**multimodal_inputs, max_new_tokens=5, do_sample=True, temperature=0.7)
    assert outputs.shape == (1, multimodal_inputs["input_ids"].shape[1] + 5)

    model = Glm4vForConditionalGeneration.from_pretrained(str(MICRO))
    tokenizer = AutoTokenizer.from_pretrained(str(MICRO))
    processor = Glm4vImageProcessor.from_pretrained(str(MICRO))
    image = Image.open(PHOTO)
    image_inputs = processor(images=image, return_tensors="pt")
    text = "What do you see in this image? <image>"
    text_inputs = tokenizer(text, return_tensors="pt")
    inputs = {
        **text_inputs,
        **image_inputs
    }
    with pytest.raises(ValueError, match=r"(?s)no <\|image\|> tokens.*one <\|image\|> token per merged 2x2 patch"
                                         r".*'<image>' in the text is just text.*processor\.apply_chat_template"):
        with torch.no_grad():
            model.generate(**inputs, max_new_tokens=100, do_sample=True, temperature=0.7)


def test_batch_feature(auto_processor):
    out = auto_processor.tokenizer("a red circle", return_tensors="pt")  # "a", " red circle": one micro-model token
    assert isinstance(out, BatchFeature) and out.input_ids is out["input_ids"] and out.input_ids.shape == (1, 2)
    inputs = auto_processor(text=["<|begin_of_image|><|image|><|end_of_image|>hi"], images=Image.open(PHOTO))
    cast = inputs.to(torch.bfloat16)
    assert cast.pixel_values.dtype == torch.bfloat16 and cast.input_ids.dtype == torch.int64
    assert cast.image_grid_thw.dtype == torch.int64 and inputs.pixel_values.dtype == torch.float32
    moved = inputs.to("cpu", dtype=torch.float16)
    assert moved.pixel_values.dtype == torch.float16 and moved.input_ids.device.type == "cpu"
    with pytest.raises(ValueError, match="casts only floating tensors"):
        inputs.to(torch.int32)
    with pytest.raises(AttributeError, match="has no field 'pixel_values_videos'"):
        inputs.pixel_values_videos


def test_apply_chat_template(auto_processor, tmp_path):
    def ask(image_item):
        return [{"role": "user", "content": [image_item, {"type": "text", "text": "What shape?"}]}]
    prompt = auto_processor.apply_chat_template(ask({"type": "image", "path": str(PHOTO)}), add_generation_prompt=True)
    assert prompt == auto_processor.tokenizer.apply_chat_template(ask({"type": "image"}))
    assert auto_processor.apply_chat_template([ask({"type": "image"})] * 2) == [prompt] * 2
    want = auto_processor(messages=ask({"type": "image", "image": Image.open(PHOTO)}))
    for item in ({"type": "image", "path": str(PHOTO)}, {"type": "image", "url": PHOTO.as_uri()},
                 {"type": "image", "url": str(PHOTO)}, {"type": "image", "image": np.asarray(Image.open(PHOTO))}):
        got = auto_processor.apply_chat_template(ask(item), tokenize=True, return_dict=True, return_tensors="pt")
        assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want)
    ids = auto_processor.apply_chat_template(ask({"type": "image", "path": str(PHOTO)}), tokenize=True)
    assert torch.equal(ids, want["input_ids"])
    with pytest.raises(ValueError, match="never uses the network; download it first"):
        auto_processor.apply_chat_template(ask({"type": "image", "url": "https://example.com/cat.png"}), tokenize=True)
    with pytest.raises(ValueError, match="return_dict=True needs tokenize=True"):
        auto_processor.apply_chat_template(ask({"type": "image"}), return_dict=True)
    with pytest.raises(ValueError, match="only return_tensors='pt'"):
        auto_processor.apply_chat_template(ask({"type": "image"}), tokenize=True, return_tensors="np")


def test_video_item_from_a_file(auto_processor, tmp_path):
    from test_video_processing import make_video, write_video
    write_video(tmp_path / "clip.mov", make_video(12, 56, 56), fps=6)
    video_processor = Glm4vVideoProcessor.from_pretrained(MICRO)
    with_video = Glm4vProcessor(auto_processor.image_processor, auto_processor.tokenizer, video_processor)
    messages = [{"role": "user", "content": [{"type": "video", "path": str(tmp_path / "clip.mov")},
                                             {"type": "text", "text": "What happens?"}]}]
    got = with_video.apply_chat_template(messages, tokenize=True, return_dict=True)
    frames, metadata = minglm4v.processing.video.load_video(tmp_path / "clip.mov")
    want = with_video(messages=[{"role": "user", "content": [{"type": "video", "video": frames},
                                                             {"type": "text", "text": "What happens?"}]}],
                      **metadata)
    assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want)
    assert got.video_grid_thw.tolist() == [[2, 4, 4]]  # 2 s at 6 fps -> 4 frames -> 2 temporal groups
    assert torch.equal(with_video(messages=messages).input_ids, got.input_ids)


def fake_hub_cache(root, repo_id, commit="0123456789abcdef0123456789abcdef01234567"):
    """A Hugging Face cache holding `repo_id` at `commit` (files linked from the micro model)."""
    repo = root / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for path in MICRO.iterdir():
        (snapshot / path.name).symlink_to(path)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return commit


@pytest.mark.parametrize("variable", ["HF_HUB_CACHE", "HF_HOME"])
def test_hub_id_resolves_to_the_local_cache(tmp_path, monkeypatch, micro_model, variable):
    cache = tmp_path / "hub" if variable == "HF_HOME" else tmp_path
    commit = fake_hub_cache(cache, "zai-org/GLM-4.1V-9B-Thinking")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv(variable, str(tmp_path))
    model = AutoModelForImageTextToText.from_pretrained("zai-org/GLM-4.1V-9B-Thinking", trust_remote_code=True)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), micro_model.state_dict().values()))
    assert isinstance(AutoTokenizer.from_pretrained("zai-org/GLM-4.1V-9B-Thinking", revision=commit), Glm4vTokenizer)
    assert isinstance(Glm4vImageProcessor.from_pretrained("zai-org/GLM-4.1V-9B-Thinking"), Glm4vImageProcessor)
    with pytest.raises(FileNotFoundError, match=r"'zai-org/GLM-4.5V' is not a local directory and no snapshot.*"
                                                r"never downloads: fetch it once with `hf download zai-org/GLM-4.5V`"):
        AutoProcessor.from_pretrained("zai-org/GLM-4.5V")


def test_from_pretrained_keywords(micro_model):
    model = Glm4vForConditionalGeneration.from_pretrained(MICRO, dtype="bfloat16", device_map="cpu", use_fast=True,
                                                          low_cpu_mem_usage=True)
    assert (model.dtype, model.device) == (torch.bfloat16, torch.device("cpu"))
    assert micro_model.dtype == torch.float32  # as stored
    for device_map in (None, "auto", torch.device("cpu"), {"": "cpu"}):
        assert Glm4vForConditionalGeneration.from_pretrained(MICRO, device_map=device_map).device.type == (
            "cuda" if device_map == "auto" and torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="dtype='float16' and torch_dtype=torch.bfloat16 disagree"):
        Glm4vForConditionalGeneration.from_pretrained(MICRO, dtype="float16", torch_dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="spreads the model over several devices"):
        Glm4vForConditionalGeneration.from_pretrained(MICRO, device_map={"visual": "cpu", "lm_head": "meta"})
    with pytest.raises(ValueError, match="device_map 'gpu' is not a device"):
        Glm4vForConditionalGeneration.from_pretrained(MICRO, device_map="gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            Glm4vForConditionalGeneration.from_pretrained(MICRO, device_map="cuda")
    for load in (Glm4vForConditionalGeneration.from_pretrained, AutoProcessor.from_pretrained,
                 Glm4vTokenizer.from_pretrained, Glm4vImageProcessor.from_pretrained):
        with pytest.raises(TypeError, match=r"argument\(s\) \['quantization_config'\] that minglm4v does not "
                                            r"implement.*Accepted and ignored"):
            load(MICRO, quantization_config={"load_in_4bit": True})


def test_auto_classes_refuse_other_models(tmp_path):
    assert isinstance(AutoTokenizer.from_pretrained(MICRO), Glm4vTokenizer)
    assert isinstance(AutoProcessor.from_pretrained(MICRO), Glm4vProcessor)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen2_vl"}))
    for auto in (AutoModelForImageTextToText, AutoProcessor, AutoTokenizer):
        with pytest.raises(ValueError, match="holds a 'qwen2_vl' model .* implements only \\['glm4v', 'glm4v_moe'\\]"):
            auto.from_pretrained(tmp_path)
    with pytest.raises(TypeError, match=r"use AutoProcessor.from_pretrained\(dir\)"):
        AutoProcessor()
    config = Glm4vConfig.tiny()
    assert AutoModelForImageTextToText.from_config(config).config is config


def test_saved_directory_loads_in_transformers(micro_model, auto_processor, tmp_path):
    """A directory written by minglm4v (model + processor) is an HF checkpoint: transformers' tokenizer,
    image processor and model read it and agree with ours."""
    from transformers import AutoTokenizer as HFAutoTokenizer
    from transformers import Glm4vForConditionalGeneration as HFModel
    from transformers.models.glm4v.image_processing_pil_glm4v import Glm4vImageProcessorPil
    micro_model.save_pretrained(tmp_path)
    auto_processor.save_pretrained(tmp_path)
    assert sorted(os.listdir(tmp_path)) == sorted(os.listdir(MICRO))
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "preprocessor_config.json",
                 "video_preprocessor_config.json"):
        assert json.loads((tmp_path / name).read_text()) == json.loads((MICRO / name).read_text()), name
    messages = [{"role": "user", "content": [{"type": "image", "path": str(PHOTO)},
                                             {"type": "text", "text": "What shape is in the picture?"}]}]
    inputs = AutoProcessor.from_pretrained(tmp_path).apply_chat_template(messages, tokenize=True, return_dict=True)
    hf_tokenizer = HFAutoTokenizer.from_pretrained(tmp_path)
    prompt = auto_processor.apply_chat_template(messages)
    assert hf_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == prompt
    text = "Is there a red circle?<think>1 shape: yellow triangle top left [80,120,310,350]</think>"
    ids = auto_processor.tokenizer(text, return_tensors="pt").input_ids[0].tolist()
    assert hf_tokenizer(text)["input_ids"] == ids and 1022 in ids  # " red circle": an added pair token
    hf_pixels = Glm4vImageProcessorPil.from_pretrained(tmp_path)(Image.open(PHOTO), return_tensors="pt")
    assert torch.equal(hf_pixels["pixel_values"], inputs.pixel_values)
    hf = HFModel.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(micro_model(**inputs).logits, hf(**inputs).logits, rtol=1e-5, atol=1e-5)


def test_model_methods_and_config_checks(micro_model):
    assert Glm4vForConditionalGeneration.generate is minglm4v.generation.decoding.generate  # one signature, bound
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    with pytest.raises(ValueError, match="mm_token_type_ids must have the shape of input_ids .* transformers' "
                                         "argument order"):
        micro_model.get_rope_index(ids, torch.tensor([[1, 4, 4]]))  # the grid where transformers puts the types
    with pytest.raises(ValueError, match="text_config.hidden_act 'gelu' is not supported"):
        Glm4vConfig(text_config={"hidden_act": "gelu"})
    with pytest.raises(ValueError, match="vision_config.hidden_act 'relu' is not supported"):
        Glm4vConfig(vision_config={"hidden_act": "relu"})


def test_tokenizer_call_keywords(auto_processor):
    tokenizer = auto_processor.tokenizer
    plain = tokenizer(["a cat", "a red cat"], padding_side="left", truncation=False, add_special_tokens=False)
    assert torch.equal(plain.input_ids, tokenizer(["a cat", "a red cat"]).input_ids)
    with pytest.raises(ValueError, match="supports only padding_side='left'"):
        tokenizer("a cat", padding_side="right")
    with pytest.raises(TypeError, match="unexpected argument 'max_length'"):
        tokenizer("a cat", max_length=4)


def test_tokenizer_apply_chat_template(auto_processor):
    tokenizer = auto_processor.tokenizer
    messages = [{"role": "user", "content": "Hi"}]
    ids = tokenizer.apply_chat_template(messages, tokenize=True)
    assert ids == tokenizer.encode(tokenizer.apply_chat_template(messages))
    assert tokenizer.apply_chat_template(messages, tokenize=True, return_tensors="pt").tolist() == [ids]
    encoded = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, return_tensors="pt")
    assert encoded.input_ids.tolist() == [ids] and encoded.attention_mask.tolist() == [[1] * len(ids)]
