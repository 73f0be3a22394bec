"""The vocabulary every stage speaks, below training, analysis and surface (which import it and
never each other's folders): the arm and model key (``arms``), how a model at one batch size is
trained and evaluated (``schedule``), what a run measures (``measure``), the epochs table's
columns (``schema``) and where the stages write (``files``)."""
