"""Model builders: the tiny from-scratch default (real checkpoints load with ``from_pretrained``)."""
