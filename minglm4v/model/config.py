"""Model configuration: `Glm4vConfig` = a `VisionConfig` + a `TextConfig` + the special token ids.

Corresponds to transformers' `Glm4vConfig` / `Glm4vVisionConfig` / `Glm4vTextConfig`. The defaults are
the real GLM-4.1V-9B-Thinking; `Glm4vConfig.tiny()` is the small model used by tests and notebooks.

`from_dict` / `from_pretrained` read an HF `config.json` in both styles (legacy `rope_scaling` with a
top-level `rope_theta` / `partial_rotary_factor`, and transformers-5 `rope_parameters`); `to_dict` /
`save_pretrained` write the transformers-5 style, which transformers loads.
"""

import dataclasses
import difflib
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from ..base.checks import field_type_problems, read_json


@dataclass
class VisionConfig:
    depth: int = 24
    hidden_size: int = 1536
    num_heads: int = 12
    intermediate_size: int = 13696  # why: the *merger* width; the ViT MLP width is out_hidden_size
    out_hidden_size: int | None = None  # ViT MLP width and merger output; None = the text width
    image_size: int = 336  # the learned position table covers (image_size / patch_size)^2 patches
    patch_size: int = 14
    temporal_patch_size: int = 2
    spatial_merge_size: int = 2
    in_channels: int = 3
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    hidden_act: str = "silu"

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def patch_dim(self) -> int:  # length of one pixel_values row: C * T * P * P (1176 for GLM-4.1V)
        return self.in_channels * self.temporal_patch_size * self.patch_size**2


@dataclass
class TextConfig:
    vocab_size: int = 151552
    hidden_size: int = 4096
    intermediate_size: int = 13696
    num_hidden_layers: int = 40
    num_attention_heads: int = 32
    num_key_value_heads: int = 2
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    partial_rotary_factor: float = 0.5
    mrope_section: list[int] | None = None  # (t, h, w) frequency counts; None = scaled from [8, 12, 12]
    max_position_embeddings: int = 65536
    pad_token_id: int | None = 151329  # None = the first eos id (what generation pads finished rows with)
    eos_token_id: list[int] = field(default_factory=lambda: [151329, 151336, 151338])
    hidden_act: str = "silu"

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def rotary_dim(self) -> int:  # only this many leading dims of each head are rotated
        return int(self.head_dim * self.partial_rotary_factor)

    def head_dim_problems(self) -> list[str]:
        """GLM-4.1V derives head_dim from the width, which must then divide evenly."""
        if self.hidden_size % self.num_attention_heads:
            return [f"text hidden_size {self.hidden_size} is not divisible by num_attention_heads "
                    f"{self.num_attention_heads}"]
        return []


# Shape-defining fields a checkpoint's config.json must state: silently taking the 9B default for
# one of them would build a model that cannot hold the checkpoint's tensors.
_REQUIRED_TEXT = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                  "num_attention_heads", "num_key_value_heads")
_REQUIRED_VISION = ("depth", "hidden_size", "num_heads", "intermediate_size", "out_hidden_size")
_TOKEN_IDS = ("image_token_id", "video_token_id", "image_start_token_id", "image_end_token_id",
              "video_start_token_id", "video_end_token_id")
# Keys HF writes into config.json that minglm4v has no use for; any other unknown key gets a warning
# (a typo such as "rms_norm_epsilon" would otherwise silently keep the default).
_BOOKKEEPING = {"architectures", "model_type", "transformers_version", "_name_or_path", "dtype", "torch_dtype",
                "use_cache", "initializer_range", "attention_bias", "attention_dropout", "hidden_dropout_prob",
                "rope_scaling", "rope_parameters", "bos_token_id", "eos_token_id", "pad_token_id",
                "tie_word_embeddings", "output_attentions", "output_hidden_states", "return_dict",
                "text_config", "vision_config", *_TOKEN_IDS}


def _build(cls, value, what):
    """A sub-config from an object or a dict; unknown keys are an error (they are usually typos)."""
    if isinstance(value, cls):
        return value
    if value is None:
        return cls()
    if not isinstance(value, dict):
        raise TypeError(f"{what} must be a {cls.__name__} or a dict, got {type(value).__name__}")
    names = set(_names(cls))
    unknown = sorted(set(value) - names)
    if unknown:
        raise TypeError(f"{what} got unknown field(s) {unknown}; valid fields are {sorted(names)}")
    return cls(**value)


@dataclass
class Glm4vConfig:
    vision_config: VisionConfig = field(default_factory=VisionConfig)
    text_config: TextConfig = field(default_factory=TextConfig)
    image_token_id: int = 151343  # <|image|>: every image *and video-frame* feature slot
    video_token_id: int = 151344  # <|video|>: only in the prompt before the processor expands it
    image_start_token_id: int = 151339
    image_end_token_id: int = 151340
    video_start_token_id: int = 151341
    video_end_token_id: int = 151342
    tie_word_embeddings: bool = False
    dtype: str = "bfloat16"  # dtype the weights are stored in; from_pretrained loads this by default
    # what a subclass for another family of the GLM-V line (config_moe.Glm4vMoeConfig) changes
    text_class: ClassVar[type] = TextConfig
    model_type: ClassVar[str] = "glm4v"
    architecture: ClassVar[str] = "Glm4vForConditionalGeneration"
    required_text: ClassVar[tuple[str, ...]] = _REQUIRED_TEXT

    def __post_init__(self):
        self.vision_config = _build(VisionConfig, self.vision_config, "vision_config")
        self.text_config = _build(self.text_class, self.text_config, "text_config")
        v, t = self.vision_config, self.text_config
        if isinstance(t.eos_token_id, int) and not isinstance(t.eos_token_id, bool):
            t.eos_token_id = [t.eos_token_id]
        wrong = field_type_problems(v, "vision_config") + field_type_problems(t, "text_config") + \
            field_type_problems(self, "config")
        if wrong:
            raise TypeError(f"invalid {type(self).__name__} field types (write numbers as JSON numbers, not "
                            f"strings):\n  - " + "\n  - ".join(wrong))
        if v.out_hidden_size is None:
            v.out_hidden_size = t.hidden_size
        if t.mrope_section is None:
            n = t.rotary_dim // 2  # why: GLM splits the rotary frequencies ~1:1.5:1.5 over (t, h, w)
            t.mrope_section = [n // 4, (n - n // 4) // 2, n - n // 4 - (n - n // 4) // 2]
        t.mrope_section, t.eos_token_id = list(t.mrope_section), list(t.eos_token_id)
        if t.pad_token_id is None and t.eos_token_id:
            t.pad_token_id = t.eos_token_id[0]
        self._validate()

    def _validate(self):
        v, t = self.vision_config, self.text_config
        problems = _range_problems(v, "vision_config") + _range_problems(t, "text_config")
        if problems:  # the checks below divide by these numbers
            raise ValueError(f"invalid {type(self).__name__}:\n  - " + "\n  - ".join(problems))
        problems += t.head_dim_problems()
        if t.num_attention_heads % t.num_key_value_heads:
            problems.append(f"num_attention_heads {t.num_attention_heads} is not a multiple of "
                            f"num_key_value_heads {t.num_key_value_heads}")
        if t.rotary_dim % 2 or sum(t.mrope_section) != t.rotary_dim // 2:
            problems.append(f"mrope_section {t.mrope_section} sums to {sum(t.mrope_section)} but must sum to "
                            f"head_dim * partial_rotary_factor / 2 = {t.head_dim} * {t.partial_rotary_factor}"
                            f" / 2 = {t.rotary_dim / 2}; change mrope_section or partial_rotary_factor")
        if len(t.mrope_section) != 3:
            problems.append(f"mrope_section must have 3 entries (t, h, w), got {t.mrope_section}")
        if v.hidden_size % v.num_heads or v.head_dim % 4:
            problems.append(f"vision hidden_size {v.hidden_size} / num_heads {v.num_heads} must give an "
                            f"integer head_dim divisible by 4 (2-D RoPE splits it in (row, col) halves)")
        if v.image_size % v.patch_size:
            problems.append(f"vision image_size {v.image_size} is not a multiple of patch_size {v.patch_size}")
        if v.out_hidden_size != t.hidden_size:
            problems.append(f"vision out_hidden_size {v.out_hidden_size} must equal text hidden_size "
                            f"{t.hidden_size}: merged image features replace token embeddings")
        for name, act in (("text_config", t.hidden_act), ("vision_config", v.hidden_act)):
            if act != "silu":  # why: GLM-4.1V's SwiGLU MLPs use SiLU; no other activation is implemented
                problems.append(f"{name}.hidden_act {act!r} is not supported: GLM-4.1V's MLPs use 'silu'")
        if self.tie_word_embeddings:
            problems.append("tie_word_embeddings=True is not supported: GLM-4.1V has an untied lm_head "
                            "(its own lm_head.weight); leave it False")
        ids = [(name, getattr(self, name)) for name in _TOKEN_IDS] + [("text_config.pad_token_id", t.pad_token_id)]
        for name, value in ids + [("text_config.eos_token_id", i) for i in t.eos_token_id]:
            if value is None or not 0 <= value < t.vocab_size:
                problems.append(f"{name} {value} is outside the vocabulary [0, {t.vocab_size}); set the right "
                                f"id in config.json")
        if self.dtype not in _DTYPES:
            problems.append(f"dtype {self.dtype!r} is not one of {_DTYPES}")
        if problems:
            raise ValueError(f"invalid {type(self).__name__}:\n  - " + "\n  - ".join(problems))

    # ---------------------------------------------------------------- presets
    @classmethod
    def glm41v_9b(cls) -> "Glm4vConfig":
        """The real GLM-4.1V-9B-Thinking (10.29 B parameters)."""
        return cls()

    @classmethod
    def tiny(cls) -> "Glm4vConfig":
        """A ~0.3 M-parameter model with every feature of the real one (GQA, 3 non-empty mrope
        sections, an 8x8 position table smaller than most image grids). Token ids follow the fixture
        tokenizer in data/tokenizer (the real ids minus 150329)."""
        return cls(
            vision_config=dict(depth=2, hidden_size=32, num_heads=2, intermediate_size=128,
                               out_hidden_size=64, image_size=112),
            text_config=dict(vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                             num_attention_heads=2, num_key_value_heads=1, mrope_section=[2, 3, 3],
                             max_position_embeddings=1024, pad_token_id=1000, eos_token_id=[1000, 1007, 1009]),
            image_token_id=1014, video_token_id=1015, image_start_token_id=1010, image_end_token_id=1011,
            video_start_token_id=1012, video_end_token_id=1013, dtype="float32",
        )

    # ---------------------------------------------------------------- HF config.json
    @classmethod
    def from_dict(cls, d: dict) -> "Glm4vConfig":
        """Read an HF-style config dict (legacy or transformers-5 rope fields); bookkeeping keys
        such as `architectures` or `transformers_version` are ignored, other unknown keys warned about."""
        if not isinstance(d, dict):
            raise ValueError(f"a config must be a dict (a JSON object), got {type(d).__name__}")
        for key in ("text_config", "vision_config"):
            if not isinstance(d.get(key), dict):
                raise ValueError(f"config is missing the required '{key}' section; a GLM-4.1V config.json "
                                 f"has 'text_config' and 'vision_config' dicts")
        text, vision = dict(d["text_config"]), dict(d["vision_config"])
        for section, required, name in ((text, cls.required_text, "text_config"),
                                        (vision, _REQUIRED_VISION, "vision_config")):
            missing = [k for k in required if k not in section]
            if missing:
                raise ValueError(f"config {name} is missing required field(s) {missing}")
        _known(d, (*_TOKEN_IDS, "tie_word_embeddings"), "config.json")
        text.setdefault("pad_token_id", None)  # not the 9B's id, which a small vocabulary does not have
        rope = text.get("rope_parameters") or text.get("rope_scaling") or {}
        if not isinstance(rope, dict) or not isinstance(vision.get("rope_parameters", {}), dict):
            raise ValueError(f"config rope_parameters / rope_scaling must be a dict, got {rope!r}")
        text.setdefault("rope_theta", rope.get("rope_theta", 10000.0))
        text.setdefault("partial_rotary_factor", rope.get("partial_rotary_factor", 0.5))
        if "mrope_section" in rope:
            text["mrope_section"] = rope["mrope_section"]
        vision.setdefault("rope_theta", (vision.get("rope_parameters") or {}).get("rope_theta", 10000.0))
        dtype = d.get("dtype") or d.get("torch_dtype") or text.get("dtype") or "float32"
        return cls(
            vision_config=_known(vision, _names(VisionConfig), "config.json vision_config"),
            text_config=_known(text, _names(cls.text_class), "config.json text_config"),
            tie_word_embeddings=d.get("tie_word_embeddings", False), dtype=dtype,
            **{k: d[k] for k in _TOKEN_IDS if k in d},
        )

    @classmethod
    def from_pretrained(cls, directory) -> "Glm4vConfig":
        path = Path(directory) / "config.json"
        if not path.is_file():
            raise FileNotFoundError(f"no config.json in {directory}; expected an HF-layout model directory")
        return cls.from_dict(read_json(path, "a GLM-4.1V config.json with 'text_config' and 'vision_config'"))

    def to_dict(self) -> dict:
        v, t = dataclasses.asdict(self.vision_config), dataclasses.asdict(self.text_config)
        rope = {"rope_type": "default", "rope_theta": t.pop("rope_theta"),
                "partial_rotary_factor": t.pop("partial_rotary_factor"), "mrope_section": t.pop("mrope_section")}
        vision_rope = {"rope_type": "axial", "rope_theta": v.pop("rope_theta")}  # transformers 5's name
        return {
            "architectures": [self.architecture],
            "model_type": self.model_type,
            **{k: getattr(self, k) for k in _TOKEN_IDS},
            "tie_word_embeddings": self.tie_word_embeddings,
            "dtype": self.dtype,
            "text_config": {"model_type": f"{self.model_type}_text", **t, "rope_parameters": rope,
                            "attention_bias": True, "dtype": self.dtype},
            "vision_config": {"model_type": f"{self.model_type}_vision", **v, "rope_parameters": vision_rope,
                              "attention_bias": False},
        }

    def save_pretrained(self, directory) -> None:
        Path(directory).mkdir(parents=True, exist_ok=True)
        (Path(directory) / "config.json").write_text(json.dumps(self.to_dict(), indent=2) + "\n")


# ----------------------------------------------------------------------------- field checks
_DTYPES = ("float32", "bfloat16", "float16", "float64")


def _names(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _known(section: dict, names, where: str) -> dict:
    """The entries of `section` that are fields; warns about any other key that is not HF bookkeeping."""
    for key in sorted(set(section) - set(names) - _BOOKKEEPING):
        close = difflib.get_close_matches(key, names, n=1)
        warnings.warn(f"{where}: unknown key {key!r} is ignored" + (f" (did you mean {close[0]!r}?)" if close else ""),
                      stacklevel=3)
    return {k: v for k, v in section.items() if k in names}


def _range_problems(section, what) -> list[str]:
    """Sizes must be positive, rates finite and positive (a field whose metadata says min 0 may be 0)."""
    problems = []
    for f in dataclasses.fields(section):
        value, zero_ok = getattr(section, f.name), f.metadata.get("min") == 0
        if f.type is int and value < (0 if zero_ok else 1):
            problems.append(f"{what}.{f.name} must be >= {0 if zero_ok else 1}, got {value}")
        if f.type is float and not (math.isfinite(value) and (value >= 0 if zero_ok else value > 0)):
            problems.append(f"{what}.{f.name} must be a finite number {'>=' if zero_ok else '>'} 0, got {value}")
    if getattr(section, "partial_rotary_factor", 1) > 1:
        problems.append(f"{what}.partial_rotary_factor must lie in (0, 1], got {section.partial_rotary_factor}")
    if any(n < 0 for n in getattr(section, "mrope_section", None) or []):
        problems.append(f"{what}.mrope_section must hold counts >= 0, got {section.mrope_section}")
    return problems
