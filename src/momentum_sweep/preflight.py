"""Stage `params`: params.yaml is valid and the run it asks for can start.

Loading the file has validated every key (``params.load``, as every stage does). This stage
depends on the whole file, so DVC runs it, first, after any edit, and it also makes every check
that can be made before a stage starts (the device exists; each pass of the train stage fits in
memory, were every model to train): an error here stops `dvc repro` before DVC clears any
stage's outputs. It has no outputs: nothing downstream reruns because it ran.
"""

from .training import train


def run(p):
    device, implementation, _ = train.preflight(p)
    print(f"params: params.yaml is valid ({len(p.momenta)} momentum value(s), "
          f"{len(p.train.lrs)} learning rate(s), {len(p.train.batch_sizes)} batch size(s), "
          f"{p.train.replicates} replicate(s)); training would run on {device.type} with the "
          f"{implementation} step", flush=True)
