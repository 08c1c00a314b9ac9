"""16 · performance: the memory arithmetic of decoding, from a config and a model alone."""


def longest_context(text_config, budget_bytes: int, bytes_per_value: int = 2) -> int:
    """Exercise 1: how many tokens of KV cache fit in `budget_bytes`. Every token stores a key
    and a value per layer, each kv_heads x head_dim numbers (GQA: the KV heads, not the query heads)."""
    per_token = 2 * text_config.num_hidden_layers * text_config.num_key_value_heads * text_config.head_dim
    return budget_bytes // (per_token * bytes_per_value)


def decode_ceiling(model, bandwidth_bytes_per_s: float, bytes_per_value: int = 2) -> float:
    """Exercise 2: at batch 1 every new token reads every weight once, so memory bandwidth caps
    decoding at bandwidth / weight bytes tokens per second, however fast the arithmetic."""
    weight_bytes = sum(p.numel() for p in model.parameters()) * bytes_per_value
    return bandwidth_bytes_per_s / weight_bytes
