"""eef: fine-tune LLM agents on expert successes and on what exploring expert failures reveals."""

__version__ = "0.1.0"
