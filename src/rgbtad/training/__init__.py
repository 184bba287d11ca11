"""Training: the detector trainer (EMA, schedule, checkpoints, logs, DDP) and snippet-backbone training."""
