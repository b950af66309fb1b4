"""Accuracy evaluation: ImageNet-1k, ADE20k, COCO; single process or under torchrun."""
