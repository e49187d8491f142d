"""`python -m llm_notebook COMMAND ...`: the package's command line.

    python -m llm_notebook run WORKFLOW --input data.csv --output out.parquet

One command for now (`run`, llm_notebook/workflows/cli.py); the dispatch stays here so that
another command does not grow the workflow module.
"""

from __future__ import annotations

import sys

COMMANDS = {"run": "run a saved workflow (or a workflow file) over a data file"}
USAGE = ("usage: python -m llm_notebook COMMAND ...\n\ncommands:\n"
         + "".join(f"  {name:<6} {what}\n" for name, what in COMMANDS.items())
         + "\n`python -m llm_notebook COMMAND --help` for a command's options.")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE, file=sys.stdout if args else sys.stderr)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(f"llm-notebook: unknown command {command!r}; the commands are: "
              f"{', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    from .workflows import cli

    return cli.main(rest)


if __name__ == "__main__":
    sys.exit(main())
