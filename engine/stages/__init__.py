"""Stages: one module per sub-command body (read files, call the science, write files, log).

Only the CLI, the pipeline (``run``) and the demo import stages."""
