"""The bundled micro model (data/micro-model, made by scripts/train_micro_model.py through `python -m
minglm4v train` and `python -m minglm4v rl`) on pictures it never saw: what it gets right, with floors from
its measured accuracy; and the steps of that recipe, each run small."""

import numpy as np
import pytest
import torch
from helpers import REPO, TINY, load_script
from PIL import Image

from minglm4v import Glm4vForConditionalGeneration
from minglm4v.processing.tokenizer import Glm4vTokenizer
from minglm4v.study.shapes import questions
from minglm4v.study.shapes_eval import EVAL_SEED, answer, evaluate, grade, summarize

SCRIPT = load_script("train_micro_model")  # SCRIPT.PAIRS, SCRIPT.add_pair_tokens, SCRIPT.demo_scene, SCRIPT.save_base


def test_demo_picture(micro):
    """data/images/shapes.png, the picture ./run.sh asks about: all 22 questions the templates allow get
    well-formed replies, the count is right, and so is every shape named by its colour."""
    scene = SCRIPT.demo_scene()
    picture = Image.open(REPO / "data" / "images" / "shapes.png")
    assert np.array_equal(np.asarray(picture), np.asarray(scene.image()))
    asked = questions(scene)
    graded = [grade(q, r) for q, r in zip(asked, answer(*micro, [picture] * len(asked), [q.text for q in asked]))]
    assert len(graded) == 22 and all(g.well_formed for g in graded)
    assert [g.correct for g in graded if g.question.kind == "count"] == [True]
    assert [g.correct for g in graded if g.question.kind == "shape"] == [True] * 3


def test_fresh_pictures_meet_the_floor(micro):
    """30 pictures from a seed that made no training data. Measured with this model: count 30/30, color
    24/24, shape 29/29, yes/no 29/30, position words 29/30, box IoU >= 0.5 29/30, well-formed 143/143;
    the floors sit below those and far above chance (count 1/3, color 1/4, shape 1/3, yes/no 1/2,
    position words 1/6)."""
    summary = summarize(evaluate(*micro, pictures=30, seed=EVAL_SEED + 1))
    rates = {name: right / asked for name, (right, asked) in summary.items()}
    floors = {"count": 0.95, "color": 0.9, "shape": 0.9, "yes/no": 0.9, "position": 0.85, "box IoU >= 0.5": 0.85,
              "well-formed": 1.0}
    assert all(rates[name] >= floor for name, floor in floors.items()), rates


def test_add_pair_tokens(tmp_path):
    """Stage 3's starting point: each colour-shape pair becomes one added token wherever it is written,
    its embedding and lm_head rows start as the mean of its two words' rows, and every other row is
    unchanged, so the logits of the old tokens are too."""
    SCRIPT.save_base(tmp_path / "base")
    start = SCRIPT.add_pair_tokens(tmp_path / "base", tmp_path / "start")
    (old, old_tok), (new, new_tok) = ((Glm4vForConditionalGeneration.from_pretrained(d).eval(),
                                       Glm4vTokenizer.from_pretrained(d).tokenizer) for d in (tmp_path / "base", start))
    assert new.config.text_config.vocab_size == 1040 and new_tok.get_vocab_size() == 1034
    pair_ids = [new_tok.token_to_id(pair) for pair in SCRIPT.PAIRS]
    assert sorted(pair_ids) == list(range(1022, 1034))
    question = new_tok.encode("Is there a red circle?").ids
    assert question[-2:] == [new_tok.token_to_id(" red circle"), old_tok.encode("?").ids[0]]
    for matrix in (lambda m: m.model.language_model.embed_tokens.weight, lambda m: m.lm_head.weight):
        before, after = matrix(old), matrix(new)
        assert torch.equal(after[:1022], before[:1022])
        for pair, pid in zip(SCRIPT.PAIRS, pair_ids):
            color, kind = (old_tok.encode(" " + word).ids[0] for word in pair.split())
            assert torch.equal(after[pid], (before[color] + before[kind]) / 2)
    ids = torch.tensor([old_tok.encode("What shape is red?").ids])
    with torch.no_grad():
        assert torch.equal(new(ids).logits[..., :1022], old(ids).logits[..., :1022])


def test_the_rl_steps_of_the_recipe_run(tmp_path):
    """train_stage, reinforce and average, as scripts/train_micro_model.py calls them after its four SFT stages
    (the varied stage, RL, the average of stage 4 and RL) and scripts/reinforce_micro_model.py for its tries,
    on a few pictures for one step each: each writes a model that loads, the RL step logs one line, and the
    average is (1 - w) * first + w * second in every parameter, with first's tokenizer and processors."""
    work, start = tmp_path / "work", REPO / "data" / "micro-model"
    recipe = dict(SCRIPT.VARIED_STAGE, pictures=2, max_steps=1, batch_size=2, warmup_steps=0)
    trained = SCRIPT.train_stage(work, 5, recipe, start=start)
    assert trained == work / "stage5" and (work / "data5" / "train.jsonl").read_text().count("\n") == 4
    small = dict(pictures=2, max_steps=1, batch_size=2, group_size=2, max_new_tokens=8, save_every=0)
    out = SCRIPT.reinforce(work, trained, dict(SCRIPT.RL_STAGE, **small))
    assert (out / "rl_log.jsonl").read_text().count("\n") == 1
    lines = (work / "rl-data" / "rl.jsonl").read_text().splitlines()
    assert len(lines) == 4 and Glm4vForConditionalGeneration.from_pretrained(out).config.text_config.vocab_size == 1040
    averaged = SCRIPT.average(start, out, SCRIPT.AVERAGE, work / "final")
    first, second, mixed = (dict(Glm4vForConditionalGeneration.from_pretrained(d).named_parameters())
                            for d in (start, out, averaged))
    assert not torch.equal(first["lm_head.weight"], second["lm_head.weight"])
    for name, parameter in mixed.items():
        assert torch.equal(parameter, (1 - SCRIPT.AVERAGE) * first[name] + SCRIPT.AVERAGE * second[name]), name
    assert (averaged / "tokenizer.json").read_bytes() == (start / "tokenizer.json").read_bytes()
    with pytest.raises(ValueError, match="have different parameters .names or shapes.: only two models of one"):
        SCRIPT.average(start, TINY, 0.5, work / "mixed")
    # reinforce_micro_model.py's try on the training renderer's pictures
    plain = dict(load_script("reinforce_micro_model").COUNT_RL_PLAIN, **small)
    SCRIPT.reinforce(work, trained, plain, name="rl-count-plain")
    lines = (work / "rl-count-plain-data" / "rl.jsonl").read_text().splitlines()
    assert len(lines) == 4 and (work / "rl-count-plain" / "rl_log.jsonl").is_file()
