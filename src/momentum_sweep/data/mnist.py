"""Facts about MNIST that the code would otherwise repeat, and where the flattened files live."""

from pathlib import Path

TRAIN_IMAGES = 60_000
TEST_IMAGES = 10_000
SIDE = 28
PIXELS = SIDE * SIDE
CLASSES = 10

CARRIED_DIR = Path("data/mnist")  # the gzip copy this repository carries
RAW_DIR = Path("data/raw")
FLAT_DIR = Path("data/flat")
FLAT_FILES = ("train.pt", "test.pt")
MISSING_FLAT = "run `dvc repro flatten`"

# MD5 of the decompressed IDX files: the well-known MNIST checksums.
MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
