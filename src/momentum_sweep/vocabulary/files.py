"""Where the analysing stages write. ``results/`` holds every figure a reader needs (plain
outputs: the epochs table, the full summaries with their intervals, comparisons, rules and
per-model detail); ``metrics/`` holds the DVC metrics, the few decisions that `dvc metrics show`
and `dvc exp show` put side by side across experiments: ``metrics/<stage>.json`` is the headline of
``results/<stage>.json``. ``momentum-sweep-compare`` writes both into one folder, so there the
headline is named for what it is (``COMPARISON_HEADLINE``)."""

from pathlib import Path

RESULTS_DIR = Path("results")
METRICS_DIR = Path("metrics")
EPOCHS_FILE = RESULTS_DIR / "epochs.tsv"
SUMMARY_FILE = RESULTS_DIR / "summary.json"
SURFACE_FILE = RESULTS_DIR / "surface.json"
SUMMARY_HEADLINE_FILE = METRICS_DIR / "summary.json"
SURFACE_HEADLINE_FILE = METRICS_DIR / "surface.json"
COMPARISON_HEADLINE = "headline.json"
