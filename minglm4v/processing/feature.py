"""`BatchFeature`: what the tokenizer, the image/video processors and the processor return.

Corresponds to transformers' `BatchFeature` / `BatchEncoding`: a dict of model inputs whose keys can
also be read as attributes, moved to a device in one call and handed to the model with `**`:

    inputs = processor.apply_chat_template(messages, tokenize=True, return_dict=True).to(model.device)
    inputs.input_ids          # (B, L) int64, same as inputs["input_ids"]
    model.generate(**inputs)

`.to(torch.bfloat16)` casts only floating tensors (pixels), never token ids or grids.
"""

import torch


class BatchFeature(dict):
    """A dict of tensors (and a few lists) with attribute access and `.to(device or dtype)`."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no field {name!r}; it has {sorted(self)}") from None

    def to(self, device_or_dtype=None, *, device=None, dtype=None) -> "BatchFeature":
        """A new BatchFeature with every tensor moved to `device` and floating tensors cast to `dtype`;
        the positional argument may be either (`.to("cuda")`, `.to(torch.bfloat16)`)."""
        if isinstance(device_or_dtype, torch.dtype):
            dtype = device_or_dtype
        elif device_or_dtype is not None:
            device = device_or_dtype
        if dtype is not None and not dtype.is_floating_point:
            raise ValueError(f"BatchFeature.to casts only floating tensors (pixels), so dtype must be a floating "
                             f"type such as torch.bfloat16, got {dtype}")
        return BatchFeature({key: _move(value, device, dtype) for key, value in self.items()})


def _move(value, device, dtype):
    if not isinstance(value, torch.Tensor):
        return value  # e.g. the video processor's per-video timestamps
    return value.to(device=device, dtype=dtype if value.is_floating_point() else None)
