"""What a run needs beside its model: the run directory, checkpoints, ownership, optimizers."""
