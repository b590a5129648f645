"""Models: target-network specs, the hypernetwork, modes, the members interface."""
