"""Turning the model into text: `decoding` (the KV-cached loop, greedy and sampling), `streaming` (text as it comes).

The model computes logits; everything about caching policy and choosing tokens lives here.
"""
