"""08 · prompts: image tokens without the processor; the chat template by hand; boxes in pixels."""

from minglm4v.processing.chat_template import parse_boxes
from minglm4v.processing.image import smart_resize

IMAGE = "<|begin_of_image|><|image|><|end_of_image|>"


def image_tokens(height, width):
    """Exercise 1: default budget; the processor writes t*H*W/4 <|image|> tokens (t = 1)."""
    h, w = smart_resize(2, height, width)
    return (h // 14) * (w // 14) // 4


def render(messages):
    """Exercise 2: [gMASK]<sop>, then <|role|>\\n and the content per message (an image as its
    three tags, no separator), and <|assistant|>\\n to let the model answer."""
    out = "[gMASK]<sop>"
    for message in messages:
        content = message["content"]
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        body = "".join(IMAGE if part["type"] == "image" else part["text"] for part in content)
        out += f"<|{message['role']}|>\n{body}"
    return out + "<|assistant|>\n"


def boxes_to_pixels(answer, width, height):
    """Exercise 3: boxes are [x1, y1, x2, y2] in 0..1000 of the image's width and height."""
    return [(x1 * width / 1000, y1 * height / 1000, x2 * width / 1000, y2 * height / 1000)
            for x1, y1, x2, y2 in parse_boxes(answer)]
