"""Augmentation steps: add rows in training mode only (gaussian_noise, oversample, smote, mixup).

Every step is seeded (``seed``), appends its rows after the original ones, can
mark them (``mark=True`` adds the Boolean ``__augmented`` column) and leaves
frames unchanged when applied to new data (``train=False``).
"""

from transforms.augment._base import MARK_COLUMN, AugmentStep, FittedAugment
from transforms.augment.mixup import FittedMixup, Mixup
from transforms.augment.noise import FittedGaussianNoise, GaussianNoise
from transforms.augment.oversample import FittedOversampler, RandomOversampler
from transforms.augment.smote import SMOTE, FittedSMOTE

__all__ = [
    "MARK_COLUMN",
    "SMOTE",
    "AugmentStep",
    "FittedAugment",
    "FittedGaussianNoise",
    "FittedMixup",
    "FittedOversampler",
    "FittedSMOTE",
    "GaussianNoise",
    "Mixup",
    "RandomOversampler",
]
