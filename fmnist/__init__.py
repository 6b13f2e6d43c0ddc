"""fmnist: train, compare and explain Fashion-MNIST and MNIST classifiers with PyTorch Lightning."""

__version__ = "0.1.0"
