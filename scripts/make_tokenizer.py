"""Build the small fixture tokenizer in data/tokenizer/ (deterministic: same files on every run).

The real GLM-4.1V tokenizer is a ~20 MB byte-level BPE with 151k regular tokens. For tests and the
tiny models we train a 1000-token byte-level BPE on a generated English corpus and append the GLM
special tokens in the real order, so that  fixture id = real id - 150329  for all 16 of them:

    0..999      256 byte symbols + 744 merges
    1000..1015  <|endoftext|> [MASK] [gMASK] [sMASK] <sop> <eop> <|system|> <|user|> <|assistant|>
                <|observation|> <|begin_of_image|> <|end_of_image|> <|begin_of_video|>
                <|end_of_video|> <|image|> <|video|>                          (special)
    1016..1021  <think> </think> <answer> </answer> <|begin_of_box|> <|end_of_box|>  (not special:
                they survive decode(skip_special_tokens=True), as in the real tokenizer)

Pre-tokenizer and decoder follow the real GLM-4 tokenizer.json: the GLM-4 (cl100k-style) split
regex, then a byte-level mapping without regex and without a prefix space.

Writes tokenizer.json, tokenizer_config.json (with the official chat template) and
special_tokens_map.json in the layout transformers 4.5x used for the GLM-4.1V hub files
(`Glm4vTokenizer.save_pretrained`).

Usage: python scripts/make_tokenizer.py [output_dir]
"""
import random
import sys
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

# The token list, the tokenizer_config.json layout and the chat template come from the package, so the
# files and the code that reads them can never drift apart.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from minglm4v.processing.special_tokens import NOT_SPECIAL, SPECIAL  # noqa: E402
from minglm4v.processing.tokenizer import Glm4vTokenizer  # noqa: E402

REGULAR_VOCAB_SIZE = 1000
GLM4_SPLIT_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

COLOURS = "red green blue yellow orange purple pink brown black white grey gold silver dark light".split()
SHAPES = "circle square triangle rectangle star heart diamond oval hexagon line dot cube sphere arrow".split()
ANIMALS = ("cat dog bird horse cow sheep fish lion tiger bear rabbit mouse fox elephant zebra duck "
           "frog owl monkey giraffe").split()
PLACES = "table tree car house road window garden beach river field kitchen street wall floor sky".split()
NUMBERS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
           "fifteen sixteen seventeen eighteen nineteen twenty").split()
TEMPLATES = [
    "The image shows a {c} {s} next to a {a}.",
    "In this picture there are {n} {a}s near the {p}.",
    "Let me think about the {c} {s} step by step.",
    "I think the answer is {d}, because the {a} has {n} legs.",
    "First, look at the image: the {a} is {c} and sits on the {p}.",
    "How many {s}s are in the photo? There are {d} of them.",
    "The video starts at {d} seconds, and a {a} walks across the frame.",
    "The bounding box of the {a} is [{d}, {e}, {f}, {g}].",
    "Wait, let me check again. Is the {s} really {c}? Yes, it is {c}.",
    "Describe this image. A {c} {a} is sleeping under a {c} {p}.",
    "Question: what colour is the {s}? Answer: the {s} is {c}.",
    "So the final answer is {n}. The {a} is the largest animal in the scene.",
    "Hmm, the {s} in the top left corner looks {c}, while the {a} is in the centre.",
    "Frame {d} shows the {a} jumping over a {c} {s} in the {p}.",
]
FIXED_LINES = [
    "Got it, let's look at the image carefully.",
    "Okay, so the user is asking about the objects in the picture.",
    "Thinking about it more, the shapes are arranged in a grid of rows and columns.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 12 24 36 48 64 100 128 256 512 1000 2025.",
    "Colours mix: red and blue make purple, yellow and blue make green.",
    "The model reads the image as patches, merges them, and then writes its reasoning.",
    "Answer the question using a single word or phrase.",
    "There is nothing else in the image, so I am confident about the answer.",
]


def corpus_lines(num_lines: int = 400) -> list[str]:
    rng = random.Random(1234)
    lines = list(FIXED_LINES)
    while len(lines) < num_lines:
        template = TEMPLATES[len(lines) % len(TEMPLATES)]
        lines.append(template.format(
            c=rng.choice(COLOURS), s=rng.choice(SHAPES), a=rng.choice(ANIMALS), p=rng.choice(PLACES),
            n=rng.choice(NUMBERS), d=rng.randrange(1000), e=rng.randrange(1000),
            f=rng.randrange(1000), g=rng.randrange(1000),
        ))
    return lines


def build_tokenizer(extra_lines: list[str] = ()) -> Tokenizer:
    """The fixture tokenizer; `extra_lines` join the corpus (the micro model's shapes-world text)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(GLM4_SPLIT_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=REGULAR_VOCAB_SIZE, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus_lines() + list(extra_lines), trainer)
    if tokenizer.get_vocab_size() != REGULAR_VOCAB_SIZE:
        raise RuntimeError(f"corpus too small: BPE reached only {tokenizer.get_vocab_size()} tokens, "
                           f"expected {REGULAR_VOCAB_SIZE}; add lines to the corpus")
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL])
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in NOT_SPECIAL])
    return tokenizer


def write(out_dir: Path, extra_lines: list[str] = ()) -> None:
    Glm4vTokenizer(build_tokenizer(extra_lines)).save_pretrained(out_dir)


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "data" / "tokenizer"
    write(target)
    print(f"wrote {target}")
