"""Analysis: what training wrote, summarised. Reads model folders and metrics files; never imports
the trainer."""
