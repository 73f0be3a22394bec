"""Training: arms and replicates, the network, the two implementations of the SGD step, the
batched pass that drives them, and the model folders with their reuse rule."""
