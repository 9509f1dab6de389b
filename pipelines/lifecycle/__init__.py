"""A registered version's life after training: the promotion gate (challenger -> champion)
and the ``promotions`` table that records every decision, rollbacks included."""
