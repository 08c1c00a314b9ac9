"""11 · sampling: a min-p filter; the entropy of a distribution against temperature."""



def min_p_filter(logits, min_p):
    """Exercise 1: keep tokens with probability >= min_p * the largest; the rest become -inf."""
    probs = logits.softmax(-1)
    keep = probs >= min_p * probs.max(-1, keepdim=True).values
    return logits.masked_fill(~keep, float("-inf"))


def entropy(logits, temperature=1.0):
    """Exercise 2: -sum p log p in nats of softmax(logits / T); log V for equal logits."""
    logp = (logits / temperature).log_softmax(-1)
    return -(logp.exp() * logp).sum(-1)
