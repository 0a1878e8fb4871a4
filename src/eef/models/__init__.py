"""Models: loading checkpoints (:mod:`eef.models.loading`) and the tiny from-scratch default (:mod:`eef.models.tiny`)."""
