"""What every example shares: the ``--device``, ``--quick`` and ``--threads`` flags.

    from _common import example_parser, parse_example_args
    parser = example_parser(__doc__, quick="a few steps only")   # add your own flags to it
    args = parse_example_args(parser)                             # parsed, BLAS threads applied

``--threads N`` limits NumPy's BLAS to N threads (default 1, lmroad's rule:
see lmroad/threads.py); it takes effect at once, NumPy already imported.
"""

import argparse

from lmroad.threads import add_threads_argument, set_threads


def example_parser(doc: str, quick: str) -> argparse.ArgumentParser:
    """A parser described by the first line of ``doc``, with --device, --quick (help ``quick``)
    and --threads."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--quick", action="store_true", help=quick)
    add_threads_argument(parser)
    return parser


def parse_example_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """The command line parsed by ``parser``, and ``--threads`` applied to NumPy's BLAS."""
    args = parser.parse_args()
    set_threads(args.threads)
    return args
