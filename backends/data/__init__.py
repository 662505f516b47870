"""Datasets and images as numpy arrays: the embedded digits, MNIST, CIFAR-10, image folders, npz."""
