"""The committed params.yaml as a test starts from, and the same with one change."""

import copy

from ruamel.yaml import YAML

from clones import ROOT
from momentum_sweep import params

GOOD = YAML(typ="safe").load((ROOT / "params.yaml").read_text())


class Deleted:
    def __repr__(self):  # a stable test id, the same in every process
        return "<deleted>"


DELETE = Deleted()


def with_change(path, value):
    """GOOD with the key at ``path`` (dotted) set to ``value``, or removed (DELETE)."""
    raw = copy.deepcopy(GOOD)
    *parents, last = path.split(".")
    node = raw
    for key in parents:
        node = node[key]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return raw


def parsed(**train):
    """GOOD parsed, with these train settings changed."""
    raw = copy.deepcopy(GOOD)
    raw["train"].update(train)
    return params.parse(raw)
