"""Teaching the model: `data` (JSON Lines conversations -> batches with labels), `train` (the loop, DDP),
`fsdp` (sharded training), `lora` (low-rank adapters, PEFT layout), `checkpoints` (saving, resuming),
`plan` (memory per GPU, before a run);
reinforcing it: `rewards` (rule-based verifiers), `grpo` (the objective), `rollouts` (prompts, sampled
groups, curriculum and dynamic sampling), `rl` (the loop).
"""
