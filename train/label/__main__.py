"""``python -m topictone.train.label <subcommand> key=value ...``: the labelling loop's commands.

The first word picks the subcommand; the rest goes to that subcommand's Hydra entry
point (``conf/label/<subcommand>.yaml``), so every key=value override, ``--help`` and
``--cfg job`` work there as in ``python -m topictone.train``.
"""

from __future__ import annotations

import importlib
import sys

# name -> (module, what it does, an example)
_SUBCOMMANDS = {
    "select": (
        "topictone.train.label.selection",
        "choose unlabelled texts to label next; write Label Studio tasks and config",
        "select model=runs/x/model pool=news/ n=100 strategy=diverse output=tasks.json",
    ),
    "import": (
        "topictone.train.label.ingest",
        "turn a Label Studio JSON export into training rows (JSONL)",
        "import input=export.json output=data/labelled.jsonl append=true",
    ),
    "audit": (
        "topictone.train.label.audit",
        "rank training rows whose labels disagree with out-of-fold predictions",
        "audit model=runs/x data=data/train.jsonl top=0.05 output=review.json",
    ),
    "push": (
        "topictone.train.label.push",
        "send select's tasks to a running Label Studio project (token: $LABEL_STUDIO_API_KEY)",
        'push url=http://localhost:8080 project="News batch 1" tasks=tasks.json',
    ),
    "pull": (
        "topictone.train.label.pull",
        "a Label Studio project's annotations into training rows, as import does",
        'pull url=http://localhost:8080 project="News batch 1" output=data/labelled.jsonl',
    ),
}


def usage() -> str:
    lines = [
        "usage: python -m topictone.train.label <subcommand> [key=value ...]",
        "       (also python -m topictone.label, or topictone-label)",
        "       python -m topictone.train.label <subcommand> --help   (its settings)",
        "",
        "subcommands:",
    ]
    for name, (_, what, example) in _SUBCOMMANDS.items():
        lines += [f"  {name:7} {what}", f"          python -m topictone.train.label {example}"]
    lines += ["", "The loop, step by step: docs/labelling.md"]
    return "\n".join(lines)


def main() -> None:
    args = sys.argv[1:]
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return
    name = args[0]
    if name not in _SUBCOMMANDS:
        print(
            f"error: unknown subcommand {name!r} (use {', '.join(_SUBCOMMANDS)}; "
            "--help lists them)",
            file=sys.stderr,
        )
        sys.exit(2)
    module = importlib.import_module(_SUBCOMMANDS[name][0])
    # Hydra reads sys.argv: it must see only this subcommand's overrides.
    sys.argv = [f"{sys.argv[0]} {name}", *args[1:]]
    module.main()


if __name__ == "__main__":
    main()
