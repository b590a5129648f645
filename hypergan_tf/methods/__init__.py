"""Methods: the one training loop, the HyperGAN method and the baselines."""
