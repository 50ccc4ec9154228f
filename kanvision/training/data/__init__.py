"""Lightning DataModules, one module per dataset family; ``base`` holds the shared machinery.

A new dataset is one module here (an :class:`ImageDataModule` subclass implementing ``check_data`` and
``_make_datasets``) plus one file in ``configs/data/``.
"""

from kanvision.training.data.augment import pillow_safe, posterize
from kanvision.training.data.base import DataRootError, ImageDataModule
from kanvision.training.data.cifar import CIFAR10DataModule, CIFAR100DataModule, CIFARDataset
from kanvision.training.data.digits import DigitsDataModule
from kanvision.training.data.imagefolder import ImageFolderDataModule
from kanvision.training.data.mnist import FashionMNISTDataModule, MNISTDataModule, MNISTDataset, read_idx
from kanvision.training.data.safe_pickle import UnsafePickleError, load_data_pickle
from kanvision.training.data.synthetic import SyntheticDataModule
from kanvision.training.data.timm_dataset import TimmDataModule

__all__ = [
    "DataRootError",
    "ImageDataModule",
    "SyntheticDataModule",
    "DigitsDataModule",
    "CIFARDataset",
    "CIFAR10DataModule",
    "CIFAR100DataModule",
    "ImageFolderDataModule",
    "MNISTDataset",
    "MNISTDataModule",
    "FashionMNISTDataModule",
    "read_idx",
    "TimmDataModule",
    "UnsafePickleError",
    "load_data_pickle",
    "pillow_safe",
    "posterize",
]
