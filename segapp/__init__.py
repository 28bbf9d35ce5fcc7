"""segapp: per-pixel digit segmentation with a network that never downsamples.

The path through the package: ``data`` (files -> tensors) -> ``model`` (tensors -> logits ->
class map) -> ``metrics``/``evaluate`` (class map -> numbers) and ``images``/``render``/``predict``/
``demo`` (class map -> files and pictures). ``classes`` defines the classes, colours and mask format.
"""

__version__ = "0.1.0"
