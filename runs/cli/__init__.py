"""The ``esc-eval`` command: ``main`` and the parser, assembled from one module per command group.

Public API: ``main`` (the console script), ``UsageError``, the exit codes ``FAILED_EPISODES`` and ``BAD_INPUT``.
Each command module (run, monitor, formats, judge, serve, report, annotate, cards, personas, seeker) has
``add_parser(sub)`` and imports what is heavy inside its handlers, so ``import esc_eval.runs.cli`` stays cheap.
Exit codes (first match wins): 2 bad input, 4 an internal error (the traceback with ``--debug`` or
``ESC_EVAL_DEBUG=1``), 1 failed episodes or scores (or an endpoint refused its credentials, or a store write failed),
3 stopped before the plan was done (a signal), 0 ok.
"""

from __future__ import annotations

import os

# Spinning OpenMP threads slow CPU generation ~10x when cores are shared; set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import contextlib
import logging
import signal
import sys
import warnings
from collections.abc import Sequence

from esc_eval.agents.backends.base import LOADING_LOG
from esc_eval.roles.cards import CardError
from esc_eval.roles.personas import PersonaError
from esc_eval.roles.templates import ProtocolError
from esc_eval.runs.analysis.report import ReportError
from esc_eval.runs.cli import annotate, cards, config, formats, judge, monitor, personas, plugins, report, run, seeker, serve, view
from esc_eval.runs.cli.errors import BAD_INPUT, FAILED_EPISODES, INTERNAL_ERROR, STOPPED, UsageError
from esc_eval.runs.cli.parsing import CommandParser
from esc_eval.runs.config import ConfigError
from esc_eval.runs.formats.importing import ResultFileError
from esc_eval.runs.formats.judging import TranscriptError
from esc_eval.runs.store import StoreError

CLOSED_PIPE = 141
"""Exit code when stdout's reader went away (128 + SIGPIPE, as ``cat FILE | head`` gives): the output was cut, quietly."""

__all__ = ["BAD_INPUT", "FAILED_EPISODES", "UsageError", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    _quiet_libraries()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger().handlers[0].setFormatter(_LineFormatter())
    logging.getLogger(LOADING_LOG).setLevel(logging.INFO)  # "loading MODEL", "loaded MODEL in 14.2 s"
    from esc_eval.agents.judge.training import TrainingError
    from esc_eval.runs.annotation.labels import AnnotationError
    from esc_eval.runs.viewer import ViewerError

    with contextlib.suppress(ValueError):  # not the main thread (main called in-process): leave the handler as it is
        signal.signal(signal.SIGTERM, _terminated)  # SIGTERM unwinds like Ctrl-C: every open store closes, checkpointed
    try:
        code = int(args.handler(args) or 0)
        sys.stdout.flush()  # a closed pipe is found here (BrokenPipeError below), not in a traceback at exit
        return code
    except (ConfigError, CardError, PersonaError, ProtocolError, StoreError, TranscriptError, ReportError,
            ResultFileError, UsageError, AnnotationError, TrainingError, ViewerError) as exc:
        print(f"esc-eval: error: {exc}", file=sys.stderr)
        return BAD_INPUT
    except KeyboardInterrupt:
        print("esc-eval: interrupted", file=sys.stderr)
        return STOPPED
    except BrokenPipeError:  # `esc-eval report STORE | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the flush at exit must not fail again
        return CLOSED_PIPE
    except Exception as exc:  # a bug: one line, the traceback on request
        if args.debug or os.environ.get("ESC_EVAL_DEBUG", "") not in ("", "0"):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"esc-eval: internal error: {type(exc).__name__}: {first} (the traceback: esc-eval --debug ... or ESC_EVAL_DEBUG=1)",
              file=sys.stderr)
        return INTERNAL_ERROR


def _terminated(signum: int, frame: object) -> None:
    """SIGTERM as Ctrl-C: ``KeyboardInterrupt`` unwinds the command, so each ``with Store.open(...)`` closes its store
    (one checkpointed file, no ``-wal``); ``esc-eval run`` replaces this with its own policy while it runs."""
    raise KeyboardInterrupt


class _LineFormatter(logging.Formatter):
    """Progress (INFO) as ``esc-eval: message``; warnings and errors with their level and source."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return f"esc-eval: {record.getMessage()}" if record.levelno == logging.INFO else super().format(record)


def _quiet_libraries() -> None:
    """Keep library chatter a user cannot act on out of esc-eval's output.

    Hugging Face's per-file progress bars ("Loading weights 272/272") and advisory logs,
    and Future/Deprecation/User warnings raised inside our dependencies, say something to
    their developers, not to someone running an evaluation; esc-eval prints its own line
    per model load instead (``LOADING_LOG``). Variables a user set win.
    """
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    for category in (FutureWarning, DeprecationWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category, module=_NOISY_LIBRARIES)


_NOISY_LIBRARIES = r"(transformers|torch|peft|accelerate|huggingface_hub|vllm|ray|autogen_core|gguf)(\.|$)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="esc-eval", description="Evaluate emotional-support conversation models by simulation.",
                                     epilog=run.EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show the traceback of an internal error (also ESC_EVAL_DEBUG=1)")
    sub = parser.add_subparsers(required=True, metavar="COMMAND", parser_class=CommandParser)
    # the order of `esc-eval -h`
    for group in (run, monitor, view, formats, judge, serve, report, annotate, cards, personas, seeker, plugins, config):
        group.add_parser(sub)
    return parser
