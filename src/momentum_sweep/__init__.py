"""momentum-sweep: how SGD momentum changes the training of an MLP on MNIST."""

import os

# MKL may pick a kernel by the memory alignment of each matrix, so a model's result could depend
# on its position in a batch of models. Strict conditional numerical reproducibility makes it
# depend on the data alone (measured: no loss of speed here), which the bit-for-bit reuse of
# trained momenta relies on. MKL reads this once, at its first call.
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")
