"""Training only: the trainer, tasks, optimiser and schedule, training checkpoints, the metrics
log, hard example reintroduction, and ``train`` (the verb)."""
