"""Training: the training graph, the loop, optimizers and checkpoint files."""
