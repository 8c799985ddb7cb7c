"""Stages: one module per sub-command body (read files, call the science, write files, say what
was done). Only the CLI, the pipeline and the demo import stages.

The contract every stage follows (docs/architecture.md, "Stages"):

    summary = <verb>(inputs..., out, config, runtime, **options)

- inputs: the paths it reads (and options that are not settings of the config);
- ``out``: the one path it writes (a file or a directory, built under a temporary name);
- ``config``: the ``PipelineConfig`` (command-line values already laid over it);
- ``runtime``: a ``Runtime`` (the resolved ``Device``, where lines go, who hears progress);
- the summary: a small dataclass whose ``lines()`` are what the CLI prints.

Each output records how it was made (``stamp``: the config hash and an identity of each input),
so that ``ciml-ter run`` reuses an output only when both still match.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

from ciml_ter.device import Device
from ciml_ter.progress import ProgressCallback


def _silent(line: str) -> None:
    """Where a stage's lines go when nobody listens."""


@dataclass(frozen=True)
class Runtime:
    """What a stage gets besides its inputs, output and config: the ``Device`` it computes on
    (resolved once at entry), ``say(line)`` for lines a user reads (log), and
    ``progress(done, total, message)`` for long work (None: nobody listens)."""

    device: Device = field(default_factory=Device)
    say: Callable[[str], None] = _silent
    progress: ProgressCallback = None

    def step(self, done: int, total: int, message: str = "") -> None:
        """Report progress, if anyone listens."""
        if self.progress is not None:
            self.progress(done, total, message)


def stamp(config, **inputs) -> dict:
    """What an output records of how it was made: the config hash (``PipelineConfig.stable_hash``)
    and an identity of each input given (``files.fingerprint`` of a file or folder, a list of
    them, or the id a model or run carries). ``ciml-ter run`` reuses an output only when the
    stamp it would make now is the recorded one."""
    return {"config_hash": config.stable_hash(), "inputs": inputs}


class Summary(Protocol):
    """What a stage returns: its figures as fields, and the lines the CLI prints."""

    def lines(self) -> list[str]: ...
