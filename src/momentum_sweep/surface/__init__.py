"""The `surface` stage: the notebook's claims about the loss surface, measured on the trained
networks (see ``stage``). It reads what training wrote and never imports the trainer."""
