"""Teaching the model: `data` (JSON Lines conversations -> batches with labels), `train` (the loop, DDP),
`lora` (low-rank adapters, PEFT layout), `checkpoints` (saving, resuming).
"""
