"""The HyperGAN method: its config, diversity terms and training step."""
