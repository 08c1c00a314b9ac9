"""GLM-4.1V-Thinking chat template and output parsing, in plain Python.

`apply_chat_template` renders exactly the text the official Jinja template of the hub checkpoint
renders in transformers (`tokenizer.apply_chat_template(..., tokenize=False)`); the Jinja source is
kept below as `CHAT_TEMPLATE_JINJA` (it is written into data/tokenizer/tokenizer_config.json and the
tests render both and compare). Messages use the Hugging Face format:

    {"role": "user", "content": "text"}
    {"role": "user", "content": [{"type": "image", "image": img}, {"type": "text", "text": "..."}]}
    {"role": "assistant", "content": "...", "metadata": "..."}   # metadata is optional

    -> "[gMASK]<sop><|user|>\n<|begin_of_image|><|image|><|end_of_image|>...<|assistant|>\n"

The model answers with `<think>{reasoning}</think><answer>{answer}</answer>`; `parse_thinking`
splits that (also when truncated) and `parse_boxes` reads the bounding boxes it writes as
`<|begin_of_box|>[x1,y1,x2,y2]<|end_of_box|>`, coordinates normalised to 0..1000.
"""
import re

from . import special_tokens as st

CHAT_TEMPLATE_JINJA = (
    "[gMASK]<sop>\n"
    "{%- for msg in messages %}\n"
    "    {%- if msg.role == 'system' %}\n"
    "<|system|>\n"
    "{{ msg.content }}\n"
    "    {%- elif msg.role == 'user' %}\n"
    "<|user|>{{ '\\n' }}\n"
    "\n"
    "        {%- if msg.content is string %}\n"
    "{{ msg.content }}\n"
    "        {%- else %}\n"
    "            {%- for item in msg.content %}\n"
    "                {%- if item.type == 'video' or 'video' in item %}\n"
    "<|begin_of_video|><|video|><|end_of_video|>\n"
    "                {%- elif item.type == 'image' or 'image' in item %}\n"
    "<|begin_of_image|><|image|><|end_of_image|>\n"
    "                {%- elif item.type == 'text' %}\n"
    "{{ item.text }}\n"
    "                {%- endif %}\n"
    "            {%- endfor %}\n"
    "        {%- endif %}\n"
    "    {%- elif msg.role == 'assistant' %}\n"
    "        {%- if msg.metadata %}\n"
    "<|assistant|>{{ msg.metadata }}\n"
    "{{ msg.content }}\n"
    "        {%- else %}\n"
    "<|assistant|>\n"
    "{{ msg.content }}\n"
    "        {%- endif %}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{% if add_generation_prompt %}<|assistant|>\n"
    "{% endif %}"
)

ROLES = ("system", "user", "assistant")
CONTENT_TYPES = ("text", "image", "video")
IMAGE_PLACEHOLDER = st.image_block(1)  # the processor expands the <|image|> to one per vision feature
VIDEO_PLACEHOLDER = st.BEGIN_OF_VIDEO + st.VIDEO + st.END_OF_VIDEO


def content_item_type(item) -> str:
    """'text', 'image' or 'video' for one item of a user message's content list.

    Like the official template, an item counts as a video (then an image) if it says so in "type"
    *or* merely carries a "video" ("image") key, so {"video": frames} works without a type.
    Unlike it, unknown items raise instead of silently vanishing from the prompt.
    """
    if not isinstance(item, dict):
        raise TypeError(f"a content item must be a dict like {{'type': 'text', 'text': ...}}, got {item!r}")
    kind = item.get("type")
    for media in ("video", "image"):
        if kind == media or media in item:
            return media
    if kind == "text":
        return "text"
    raise ValueError(f"unknown content type {kind!r} in {item!r}; expected one of {CONTENT_TYPES}")


def _render_user_content(content) -> str:
    if isinstance(content, str):
        return _checked_text(content, "user content")
    if not isinstance(content, list):
        raise TypeError(f"user content must be a string or a list of items, got {type(content).__name__}")
    parts = []
    for item in content:
        kind = content_item_type(item)
        if kind == "text":
            if "text" not in item:
                raise ValueError(f"text item {item!r} has no 'text' field")
            parts.append(_checked_text(item["text"], "a text item's 'text'"))
        else:
            parts.append(IMAGE_PLACEHOLDER if kind == "image" else VIDEO_PLACEHOLDER)
    # No separators: "<|end_of_image|>What is this?" is exactly what the model was trained on.
    return "".join(parts)


def _plain_text(message: dict) -> str:
    # The official template prints system/assistant content with {{ }}, so a list of items would
    # become its Python repr in the prompt; refuse that instead of reproducing it.
    content = message["content"]
    if not isinstance(content, str):
        raise TypeError(f"{message['role']} content must be a string, got {type(content).__name__}: "
                        f"{content!r}; join the text items into one string")
    return _checked_text(content, f"{message['role']} content")


def _checked_text(text, where: str) -> str:
    """Typed text, refused if it holds a special token: only the template writes roles and image/video
    markers, which typed text would otherwise silently become. (<think>, <answer> and the box tags are
    not special: the model writes them, and they may appear in history.)"""
    if not isinstance(text, str):
        raise TypeError(f"{where} must be a string, got {type(text).__name__}: {text!r}")
    for token in st.SPECIAL:
        if token in text:
            raise ValueError(f"{where} contains the control token {token!r}: only the chat template writes "
                             f"those (roles, image and video markers). Put images and videos in "
                             f"{{'type': 'image'}} / {{'type': 'video'}} items, and write such text differently, "
                             f"e.g. with spaces inside the brackets")
    return text


def apply_chat_template(messages: list[dict], add_generation_prompt: bool = True) -> str:
    """Render a conversation into the prompt string the model expects (see module docstring).

    Earlier assistant turns are copied verbatim, as the official template does; pass only the
    answer part (`parse_thinking(output)[1]`) as history, as the official demos do.
    """
    if not isinstance(messages, (list, tuple)):
        raise TypeError(f"messages must be a list of message dicts, got {type(messages).__name__}: "
                        f"{str(messages)[:80]}; wrap one message in a list: [{{'role': 'user', ...}}]")
    if not messages:
        raise ValueError("no messages to render; pass e.g. [{'role': 'user', 'content': 'Hi'}]")
    pieces = [st.GMASK + st.SOP]
    for message in messages:
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise ValueError(f"each message must be a dict with 'role' and 'content', got {message!r}")
        role = message["role"]
        if role == "system":
            pieces.append(st.SYSTEM + "\n" + _plain_text(message))
        elif role == "user":
            pieces.append(st.USER + "\n" + _render_user_content(message["content"]))
        elif role == "assistant":
            # GLM puts tool/metadata text on the role line itself, before the newline.
            metadata = message.get("metadata") or ""
            pieces.append(f"{st.ASSISTANT}{_checked_text(metadata, 'assistant metadata')}\n" + _plain_text(message))
        else:
            raise ValueError(f"unknown role {role!r}; expected one of {ROLES}")
    if add_generation_prompt:
        pieces.append(st.ASSISTANT + "\n")
    return "".join(pieces)


def _between(text: str, start: str, end: str) -> tuple[str, str]:
    """(text after `start` up to `end` or the end of text, the rest after `end`)."""
    inside = text.split(start, 1)[1] if start in text else text
    inside, _, rest = inside.partition(end)
    return inside, rest


def parse_thinking(text: str) -> tuple[str, str]:
    """Split a Thinking-model output into (thinking, answer), both stripped of whitespace.

    Decode with skip_special_tokens=True first (the tags are not special tokens, so they survive).
        "<think>A</think><answer>B</answer>" -> ("A", "B")
        "<think>A</think>B"                  -> ("A", "B")      no answer tags
        "<think>A</think><answer>B"          -> ("A", "B")      cut off inside the answer
        "<think>A"                           -> ("A", "")       cut off while thinking
        "A</think><answer>B</answer>"        -> ("A", "B")      prompt pre-filled "<think>"
        "<answer>B</answer>" or "B"          -> ("", "B")       no thinking at all
    Text before "<think>" and after "</answer>" is dropped.
    """
    if not isinstance(text, str):
        raise TypeError(f"parse_thinking expects the decoded output string, got {type(text).__name__}")
    thinking, answer = "", text
    if st.THINK in text or st.END_THINK in text:
        thinking, answer = _between(text, st.THINK, st.END_THINK)
    if st.ANSWER in answer:
        answer, _ = _between(answer, st.ANSWER, st.END_ANSWER)
    return thinking.strip(), answer.strip()


_NUMBER = r"\s*(-?\d+(?:\.\d+)?)\s*"
_BOX_SPAN = re.compile(re.escape(st.BEGIN_OF_BOX) + "(.*?)" + re.escape(st.END_OF_BOX), re.DOTALL)
_FOUR_NUMBERS = re.compile(r"\[" + ",".join([_NUMBER] * 4) + r"\]")


def parse_boxes(text: str) -> list[tuple[float, float, float, float]]:
    """All boxes (x1, y1, x2, y2) written inside <|begin_of_box|>…<|end_of_box|> spans, in order.

    Accepted inside a span: any number of "[x1, y1, x2, y2]" groups of four ints or decimals, with
    optional spaces and extra brackets, e.g. "[12,40,300,512]", "[[12, 40, 300, 512]]" or
    "[[1,2,3,4],[5,6,7,8]]". Coordinates are returned as floats, unchanged (0..1000 = the model's
    normalised image width/height). The model also boxes plain final answers
    ("<|begin_of_box|>42<|end_of_box|>"): spans without a four-number group yield no box.
    """
    if not isinstance(text, str):
        raise TypeError(f"parse_boxes expects the decoded output string, got {type(text).__name__}")
    return [
        tuple(float(v) for v in group)
        for span in _BOX_SPAN.findall(text)
        for group in _FOUR_NUMBERS.findall(span)
    ]
