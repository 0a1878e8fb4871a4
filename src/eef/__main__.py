"""``python -m eef`` is the ``eef`` command (what ``accelerate launch -m eef run ...`` runs)."""

from eef.cli import main

if __name__ == "__main__":  # a spawned child process imports this module under another name
    main()
