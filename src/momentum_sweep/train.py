"""Stage `train`: one model per momentum in params.yaml, reusing every result that is still valid.

Log: the device, then per momentum `reused` or `trained`, one line per epoch, and a final table.
"""

import hashlib
import math
import sys

from . import data, device as devices, metrics, model, params, results, trainer
from .errors import SweepError, stage_main
from .flatten import FLAT_DIR
from .params import momentum_name


def data_hash(flat_dir=FLAT_DIR) -> str:
    digest = hashlib.sha256()
    for name in ("train.pt", "test.pt"):
        path = flat_dir / name
        if not path.exists():
            raise SweepError(f"{path} is missing; run `dvc repro flatten`")
        digest.update(results.sha256_file(path).encode())
    return digest.hexdigest()


class Progress:
    """A progress bar within each epoch on a terminal; plain lines, fit for a CI log, always."""

    def __init__(self, train_size, epochs):
        self.epochs = epochs
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=train_size, unit="img", unit_scale=True, leave=False,
                            mininterval=0.5)

    def __call__(self, epoch, done):
        if self.bar is None:
            return
        if done < self.bar.n:
            self.bar.reset()
        self.bar.set_description(f"epoch {epoch}/{self.epochs}", refresh=False)
        self.bar.update(done - self.bar.n)

    def line(self, text):
        if self.bar is None:
            print(text, flush=True)
        else:
            self.bar.write(text)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def epoch_line(stats, momenta):
    parts = [f"{momentum_name(m)}: loss {stats.train_loss[k]:.4f} val {stats.val_accuracy[k]:.4f}"
             for k, m in enumerate(momenta)]
    return (f"epoch {stats.epoch:>3}  {stats.train_seconds:6.2f}s train  "
            f"{stats.epoch_seconds:6.2f}s total  |  " + "  ".join(parts))


def train_momenta(momenta, p, fingerprints, device, splits):
    """Train ``momenta`` together; save each result; return {momentum: (record, timing)}."""
    initial = model.initial_state(p.model.hidden, p.train.seed)
    records = {m: {"momentum": m, "fingerprint": fingerprints[m], "diverged_epoch": None,
                   "params": {"model": p.model.model_dump(), "train": p.train.model_dump()},
                   "epochs": []} for m in momenta}
    timings = {m: {"device": devices.describe(device), "models_in_pass": len(momenta),
                   "epochs": []} for m in momenta}
    progress = Progress(p.train.train_size, p.train.epochs)
    stack = None
    try:
        for stack, stats in trainer.train_together(momenta, initial, p.model.hidden, p.train,
                                                    splits, devices.MemoryProbe(device), progress):
            for k, m in enumerate(momenta):
                if records[m]["diverged_epoch"] is not None:
                    continue
                quality = {key: getattr(stats, key)[k] for key in metrics.QUALITY}
                if not all(map(math.isfinite, quality.values())):
                    records[m]["diverged_epoch"] = stats.epoch
                    quality = {key: metrics.finite_or_none(v) for key, v in quality.items()}
                records[m]["epochs"].append({"epoch": stats.epoch, **quality})
                timings[m]["epochs"].append({
                    "epoch": stats.epoch, "epoch_seconds": stats.epoch_seconds,
                    "samples_per_second": p.train.train_size / stats.train_seconds,
                    **stats.memory})
            progress.line(epoch_line(stats, momenta))
    finally:
        progress.close()
    saved = {}
    for k, m in enumerate(momenta):
        record = results.save(m, stack.state_dict(k), records[m], timings[m])
        saved[m] = (record, timings[m])
        if record["diverged_epoch"] is not None:
            print(f"momentum {momentum_name(m)}: diverged in epoch {record['diverged_epoch']} "
                  f"(loss not finite)", flush=True)
    return saved


def final_table(results_by_momentum) -> str:
    lines = [f"{'momentum':>8}  {'status':>13}  {'train loss':>10}  {'val acc':>7}  "
             f"{'test acc':>8}  {'s/epoch':>7}"]
    for m, (record, timing) in results_by_momentum.items():
        last = record["epochs"][-1]
        status = (f"diverged@{record['diverged_epoch']}" if record["diverged_epoch"] else "ok")
        seconds = sum(e["epoch_seconds"] for e in timing["epochs"]) / len(timing["epochs"])
        fmt = lambda v: "-" if v is None else f"{v:.4f}"
        lines.append(f"{momentum_name(m):>8}  {status:>13}  {fmt(last['train_loss']):>10}  "
                     f"{fmt(last['val_accuracy']):>7}  {fmt(last['test_accuracy']):>8}  "
                     f"{seconds:7.2f}")
    return "\n".join(lines)


def run(p):
    device = devices.resolve(p.train.device)
    print(f"train: device {devices.describe(device)}", flush=True)
    flat_hash = data_hash()
    fingerprints = {m: results.fingerprint(m, p, flat_hash, device.type) for m in p.momenta}
    reused = {m: found for m in p.momenta
              if (found := results.load_reusable(m, fingerprints[m])) is not None}
    results.remove_all_but(p.momenta)
    to_train = [m for m in p.momenta if m not in reused]
    for m in p.momenta:
        print(f"momentum {momentum_name(m)}: {'reused' if m in reused else 'trained'}", flush=True)
    trained = {}
    if to_train:
        splits = data.load_splits(p.train, device)
        print(f"train: {len(to_train)} model(s) together on {len(splits['train'])} images, "
              f"{p.train.epochs} epoch(s), batch {p.train.batch_size}", flush=True)
        trained = train_momenta(to_train, p, fingerprints, device, splits)
    ordered = {m: reused.get(m) or trained[m] for m in p.momenta}
    metrics.write(ordered)
    print(final_table(ordered), flush=True)


@stage_main
def main():
    run(params.load())


if __name__ == "__main__":
    main()
