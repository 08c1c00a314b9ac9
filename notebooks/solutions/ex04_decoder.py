"""04 · decoder: the KV cache per token (GQA); which stream rotates which head dimension."""


def kv_cache_bytes_per_token(text_config, bytes_per_value, kv_heads=None):
    """Exercise 1: a key and a value per layer, kv head and head dim. `kv_heads` overrides the
    config (pass num_attention_heads for the size without GQA)."""
    heads = kv_heads or text_config.num_key_value_heads
    return 2 * text_config.num_hidden_layers * heads * text_config.head_dim * bytes_per_value


def stream_of_dim(text_config):
    """Exercise 2: "t", "h", "w" or None for each of the head_dim dimensions. Frequency j (pair
    2j, 2j+1) reads the stream mrope_section assigns to it; dims from rotary_dim on are not rotated."""
    per_frequency = [s for s, n in zip("thw", text_config.mrope_section) for _ in range(n)]
    rotated = [s for s in per_frequency for _ in range(2)]  # both dims of the pair
    return rotated + [None] * (text_config.head_dim - len(rotated))
