"""Hyperparameter sweeps with Optuna: ``python -m fmnist.sweep --config configs/sweeps/deep.yaml``.

A sweep YAML names a training config and a search space over its LightningCLI keys
(:mod:`fmnist.sweep.space`); every trial is an ordinary run scored on validation data
(:mod:`fmnist.sweep.study`); local processes or other machines share the study through its storage
(:mod:`fmnist.sweep.storage`); the winner becomes a YAML for ``train.py`` and, optionally, a final
fit on train+val that reads the test set once per seed (:mod:`fmnist.sweep.final`); the report is
:mod:`fmnist.sweep.report`; :mod:`fmnist.sweep.runner` ties them together. See docs/sweeps.md.
"""
