"""Training loop, evaluation, inference, checkpoints and distributed setup."""
