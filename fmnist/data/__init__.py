"""Data: IDX reading and validation, the dataset registry, splits, batch augmentation, the LightningDataModule.

Modules are imported by name (``from fmnist.data.sources import load_dataset``): importing this package loads
nothing, so a command that only needs the registry does not pay for Lightning.
"""
