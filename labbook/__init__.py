"""labbook: a lab-book builder for the MNIST convolutional-network experiment."""

__version__ = "0.1.0"
