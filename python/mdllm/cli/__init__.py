"""The ``mdllm`` command. Each subcommand lives in its own module of this package with
``register(subparsers)``; heavy imports happen inside the command, so ``mdllm --help`` stays fast."""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from mdllm.errors import MdllmError

_default_format = warnings.formatwarning

# Module names in mdllm.cli, in the order `mdllm --help` lists them.
COMMANDS = [
    "info",
    "encode",
    "decode",
    "tokenizer",
    "train",
    "export",
    "generate",
    "score",
    "evaluate",
    "simulate",
    "run",
]


def build_parser() -> argparse.ArgumentParser:
    from mdllm import __version__

    parser = argparse.ArgumentParser(
        prog="mdllm",
        description="Molecular-dynamics trajectories as a language: tokenize, train, generate, evaluate.",
    )
    parser.add_argument("--version", action="version", version=f"mdllm {__version__}")
    parser.add_argument("--threads", type=int, default=0, help="threads for the compiled core (0 = all cores)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars (for scripts and log files)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"mdllm.cli.{name}").register(sub)
    return parser


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    """Warnings of our own as one line, like errors ("mdllm: warning: FILE: problem")."""
    if issubclass(category, UserWarning) and "mdllm" in str(filename):
        return f"mdllm: warning: {message}\n"
    return _default_format(message, category, filename, lineno, line)


def main(argv: list[str] | None = None) -> int:
    warnings.formatwarning = _one_line_warning
    args = build_parser().parse_args(argv)
    if args.quiet:
        from mdllm.progress import set_quiet

        set_quiet()
    try:
        if args.threads:
            from mdllm import _core

            _core.set_num_threads(args.threads)
        return args.run(args) or 0
    except MdllmError as exc:
        print(f"mdllm {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"mdllm {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
