"""Study B's ``deep`` CNN in Keras, exactly as the study's code builds and trains it: the reference epoch time.

This script is the TensorFlow side of ``benchmarks/epoch_time.py``. It does not import
``fmnist`` or torch; it reads the IDX ``.gz`` files with numpy and takes the same stratified
51,000 / 9,000 split as our data module (sklearn ``train_test_split(test_size=0.15,
stratify=labels, random_state=42)``, indices sorted like ``fmnist.data.splits``).

TensorFlow is NOT a dependency of the project. Install it in a separate venv outside the repo
(never into the project's ``.venv``)::

    python3 -m venv /work/tfvenv
    /work/tfvenv/bin/pip install tensorflow-cpu scikit-learn   # or `tensorflow` where -cpu is unavailable

Run::

    /work/tfvenv/bin/python benchmarks/keras_deep.py --epochs 3 [--data-dir DIR] [--threads N] [--out keras.jsonl]

Model (study B, ``deep``): Conv2D(32,3,relu) -> BN -> MaxPool -> Conv2D(64,3,relu) -> BN -> MaxPool
-> Conv2D(128,3,relu) -> GlobalAveragePooling -> Dropout(0.5) -> Dense(10, softmax); Adam(1e-3),
sparse categorical cross-entropy, batch 64, no augmentation, no class weights (the plain code path).

Per-epoch seconds are wall-clock from ``on_epoch_begin`` to ``on_epoch_end`` of a Keras callback:
that spans the training pass and the validation pass Keras runs inside ``fit``. One JSON line
(epoch seconds, median of epochs 2..N, test accuracy, versions, load) is appended to ``--out``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import statistics
import struct
import sys
import time
from pathlib import Path

import numpy as np

DEFAULT_DIRS = ("data/FashionMNIST/raw", "/usr/share/datasets/fashion-mnist")
FILES = {
    "train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte",
}


def read_idx(path: Path) -> np.ndarray:
    if path.suffix == ".gz":
        with gzip.open(path, "rb") as handle:
            raw = handle.read()
    else:
        raw = path.read_bytes()
    ndim = raw[3]
    shape = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def find_file(data_dir: str | None, stem: str) -> Path:
    dirs = [data_dir] if data_dir else [os.environ.get("FMNIST_DATA_DIR", ""), *DEFAULT_DIRS]
    for folder in filter(None, dirs):
        for sub in (Path(folder), Path(folder) / "FashionMNIST" / "raw"):
            for name in (stem, stem + ".gz"):
                if (sub / name).is_file():
                    return sub / name
    sys.exit(f"keras_deep.py: {stem}[.gz] not found in {dirs}; pass --data-dir.")


def load(data_dir: str | None) -> dict[str, np.ndarray]:
    return {key: read_idx(find_file(data_dir, stem)) for key, stem in FILES.items()}


def build_deep(keras):
    layers = keras.layers
    return keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        layers.Conv2D(32, (3, 3), activation="relu"),
        layers.BatchNormalization(),
        layers.MaxPooling2D((2, 2)),
        layers.Conv2D(64, (3, 3), activation="relu"),
        layers.BatchNormalization(),
        layers.MaxPooling2D((2, 2)),
        layers.Conv2D(128, (3, 3), activation="relu"),
        layers.GlobalAveragePooling2D(),
        layers.Dropout(0.5),
        layers.Dense(10, activation="softmax"),
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--threads", type=int, default=0, help="intra/inter-op threads (0: TensorFlow's default)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", default=None, help="append one JSON line with the results to this file")
    parser.add_argument("--verbose", type=int, default=2, help="Keras fit verbosity (2: one line per epoch)")
    args = parser.parse_args(argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    from sklearn.model_selection import train_test_split

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    tf.keras.utils.set_random_seed(args.seed)
    keras = tf.keras

    data = load(args.data_dir)
    labels = data["train_labels"].astype(np.int64)
    train_idx, val_idx = train_test_split(np.arange(len(labels)), test_size=0.15, stratify=labels,
                                          random_state=42)
    train_idx, val_idx = np.sort(train_idx), np.sort(val_idx)
    images = data["train_images"].astype("float32")[..., None] / 255.0  # the studies' preprocessing
    x_train, y_train = images[train_idx], labels[train_idx]
    x_val, y_val = images[val_idx], labels[val_idx]
    x_test = data["test_images"].astype("float32")[..., None] / 255.0
    y_test = data["test_labels"].astype(np.int64)

    model = build_deep(keras)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.seconds: list[float] = []
            self.cpu_seconds: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self._start, self._cpu = time.perf_counter(), time.process_time()

        def on_epoch_end(self, epoch, logs=None):  # after Keras' validation pass of this epoch
            self.seconds.append(time.perf_counter() - self._start)
            self.cpu_seconds.append(time.process_time() - self._cpu)
            print(f"keras epoch {epoch + 1}: {self.seconds[-1]:.2f} s (cpu {self.cpu_seconds[-1]:.1f} s, "
                  f"load {os.getloadavg()[0]:.1f})", flush=True)

    timer = EpochTimer()
    load_before = os.getloadavg()
    history = model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs,
                        validation_data=(x_val, y_val), callbacks=[timer], verbose=args.verbose)
    load_after = os.getloadavg()
    test_loss, test_acc = model.evaluate(x_test, y_test, batch_size=256, verbose=0)
    steady = timer.seconds[1:] or timer.seconds
    steady_cpu = timer.cpu_seconds[1:] or timer.cpu_seconds
    result = {
        "impl": "keras", "model": "deep", "epochs": args.epochs, "batch_size": args.batch_size,
        "n_train": int(len(train_idx)), "n_val": int(len(val_idx)), "params": int(model.count_params()),
        "epoch_seconds": [round(s, 3) for s in timer.seconds],
        "epoch_cpu_seconds": [round(s, 3) for s in timer.cpu_seconds],
        "median_epoch_seconds": round(statistics.median(steady), 3),
        "median_epoch_cpu_seconds": round(statistics.median(steady_cpu), 3),
        "median_excludes_first_epoch": len(timer.seconds) > 1,
        "val_acc": float(history.history["val_accuracy"][-1]),
        "test_acc": float(test_acc), "test_loss": float(test_loss),
        "threads": args.threads or "default",
        "tensorflow": tf.__version__, "python": platform.python_version(),
        "loadavg_before": [round(v, 2) for v in load_before], "loadavg_after": [round(v, 2) for v in load_after],
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    print(f"keras deep: median epoch {result['median_epoch_seconds']:.2f} s (epochs 2..{args.epochs}; "
          f"cpu {result['median_epoch_cpu_seconds']:.1f} s), "
          f"test_acc {test_acc:.4f}")
    print("RESULT " + json.dumps(result), flush=True)
    if args.out:
        with open(args.out, "a") as handle:
            handle.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
