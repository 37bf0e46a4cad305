"""Demo architectures and a plain, seeded training loop.

Architectures are referred to by name (``digits-cnn``, ``tabular-mlp``) or by a factory path
``package.module:function``; :func:`build` makes either. These are the models the demo, the tests and the
recipes of later capabilities train.
"""

from hoplon.models.training import TrainingRecord, accuracy, train_classifier
from hoplon.models.zoo import ARCHITECTURES, build, digits_cnn, tabular_mlp

__all__ = ["ARCHITECTURES", "TrainingRecord", "accuracy", "build", "digits_cnn", "tabular_mlp", "train_classifier"]
