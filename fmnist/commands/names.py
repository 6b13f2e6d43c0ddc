"""The names and defaults the command line offers, without importing the libraries that define them.

Why a copy: ``fmnist VERB --help`` must answer before torch, Captum or scikit-learn load, yet an option's
choices and defaults belong in its help. Each value here mirrors one in a domain module;
``tests/commands/test_names.py`` fails the moment the two differ, so the copy cannot drift.
"""

from __future__ import annotations

DATASETS = ("fashion", "mnist")  # fmnist.data.sources.DATASETS
CORRUPTED_SETS = ("fashion-c",)  # fmnist.data.corrupted_sets.CORRUPTED_SETS
CORRUPTIONS = ("shot_noise", "impulse_noise", "glass_blur", "motion_blur", "shear", "scale", "rotate", "brightness",
               "contrast", "saturate", "inverse", "flip_lr", "flip_ud", "turn", "gaussian_noise",
               "gaussian_blur")  # fmnist.data.corruptions.CORRUPTIONS
METHODS = ("gradcam", "hirescam", "guided-gradcam", "occlusion", "ig")  # fmnist.interpret.methods.METHODS
DEFAULT_METHOD = "hirescam"  # fmnist.interpret.methods.DEFAULT_METHOD
CHECK_N = 1000  # fmnist.interpret.check.DEFAULT_N
CHECK_SANITY_N = 200  # fmnist.interpret.check.DEFAULT_SANITY_N
CHECK_OUT_FOLDER = "explain-check"  # fmnist.interpret.check.OUT_FOLDER
DELETION_STEPS = 20  # fmnist.interpret.faithfulness.DELETION_STEPS
DEFAULT_BINS = 15  # fmnist.evaluation.metrics.DEFAULT_BINS
DEFAULT_LOW_CONFIDENCE = 0.8  # fmnist.evaluation.metrics.DEFAULT_LOW_CONFIDENCE
DEFAULT_TOP_K = (2, 3, 5)  # fmnist.evaluation.metrics.DEFAULT_TOP_K
DEFAULT_REFERENCE = "logreg"  # fmnist.evaluation.robustness.DEFAULT_REFERENCE
OOD_SCORES = ("msp", "energy", "max_logit", "mahalanobis")  # fmnist.evaluation.ood.SCORE_NAMES
OOD_FIT_SIZE = 10_000  # fmnist.evaluation.ood.DEFAULT_FIT_SIZE
OOD_OUT_SIZE = 10_000  # fmnist.evaluation.ood.DEFAULT_OUT_SIZE
PREPROCESSORS = ("fashion", "ours", "plain")  # sorted(fmnist.photos.preprocess.PREPROCESSORS)
RECOMMENDED_PREPROCESS = "fashion"  # fmnist.photos.preprocess.RECOMMENDED
PHOTO_TIMEOUT = 15.0  # fmnist.photos.fetch.DEFAULT_TIMEOUT
PHOTO_MAX_BYTES = 25 * 2**20  # fmnist.photos.fetch.DEFAULT_MAX_BYTES
PHOTO_MAX_PIXELS = 64_000_000  # fmnist.photos.inputs.DEFAULT_MAX_PIXELS
PHOTO_MAX_IMAGES = 1000  # fmnist.photos.inputs.DEFAULT_MAX_IMAGES
IIIF_MAX_JSON_BYTES = 16 * 2**20  # fmnist.photos.iiif_json.DEFAULT_MAX_JSON_BYTES
SWEEP_HEARTBEAT = 60  # fmnist.sweep.storage.DEFAULT_HEARTBEAT
