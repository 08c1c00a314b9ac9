"""GLM-4.1V's special tokens by name, and the one builder of an image's token block.

Corresponds to the `added_tokens_decoder` of the checkpoint's tokenizer_config.json. Every module and
script takes token text from here; ids come from the tokenizer (`convert_tokens_to_ids`) or the model
config (`image_token_id`, ...), since they differ between the real vocabulary and the fixture one.

    image_block(4)  -> "<|begin_of_image|><|image|><|image|><|image|><|image|><|end_of_image|>"

One `<|image|>` per merged 2x2 patch window: the model writes one vision feature into each.
"""

ENDOFTEXT = "<|endoftext|>"
GMASK, SOP = "[gMASK]", "<sop>"  # every prompt starts with "[gMASK]<sop>"
SYSTEM, USER, ASSISTANT, OBSERVATION = "<|system|>", "<|user|>", "<|assistant|>", "<|observation|>"
BEGIN_OF_IMAGE, END_OF_IMAGE = "<|begin_of_image|>", "<|end_of_image|>"
BEGIN_OF_VIDEO, END_OF_VIDEO = "<|begin_of_video|>", "<|end_of_video|>"
IMAGE, VIDEO = "<|image|>", "<|video|>"  # VIDEO only until the processor expands it into frames
THINK, END_THINK, ANSWER, END_ANSWER = "<think>", "</think>", "<answer>", "</answer>"
BEGIN_OF_BOX, END_OF_BOX = "<|begin_of_box|>", "<|end_of_box|>"

# In vocabulary order (the real ids are 151329..151344). decode(skip_special_tokens=True) drops these.
SPECIAL = (ENDOFTEXT, "[MASK]", GMASK, "[sMASK]", SOP, "<eop>", SYSTEM, USER, ASSISTANT, OBSERVATION,
           BEGIN_OF_IMAGE, END_OF_IMAGE, BEGIN_OF_VIDEO, END_OF_VIDEO, IMAGE, VIDEO)
# Added tokens that are *not* special: they survive skip_special_tokens, so answers keep their tags.
NOT_SPECIAL = (THINK, END_THINK, ANSWER, END_ANSWER, BEGIN_OF_BOX, END_OF_BOX)
# A Thinking-model turn ends when the model starts the next role (or emits end-of-text); after
# </answer> GLM-4.1V writes USER, so training targets end with it (minglm4v.training.data).
END_OF_TURN = (ENDOFTEXT, USER, OBSERVATION)


def image_block(slots: int) -> str:
    """The text of one image (or one temporal group of a video) with `slots` feature slots."""
    return BEGIN_OF_IMAGE + IMAGE * slots + END_OF_IMAGE


def image_block_ids(config, slots: int) -> list[int]:
    """`image_block(slots)` as the token ids of a `Glm4vConfig`, for inputs made without a tokenizer."""
    return [config.image_start_token_id] + [config.image_token_id] * slots + [config.image_end_token_id]
