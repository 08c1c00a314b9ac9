"""From a chat with pictures to the model's inputs, and from token ids back to text.

`image` and `video` (pixels -> normalised patches and grids), `special_tokens`, `tokenizer` (byte-level BPE),
`chat_template` (messages -> prompt text, replies -> thinking / answer / boxes), `processor` (all of them
together: `Glm4vProcessor`), `feature` (`BatchFeature`, the dict they return).
"""
