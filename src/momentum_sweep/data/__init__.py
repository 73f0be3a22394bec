"""MNIST: the carried copy, its download and flattening, and the splits the trainer sees."""
