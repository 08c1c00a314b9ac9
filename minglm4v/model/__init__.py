"""The network, in the order data flows through it.

`config` (sizes) -> `patch_embed` (pixels -> patch vectors) -> `vision` (the ViT, with `rope`'s 2-D rotary
embedding) -> `merger` (2x2 patches -> one LLM token) -> `decoder` (the GLM-4 text model, 3-D M-RoPE) ->
`glm4v` (the two joined at the <|image|> tokens: `Glm4vForConditionalGeneration`). `layers` holds the small
shared pieces (RMSNorm, SwiGLU); `weights` reads and writes HF-layout safetensors checkpoints.
"""
