"""The command line's tree of commands and actions with their one-line help, free of the engine.

Why apart: the options of a command come from the engine's config dataclasses, whose modules import torch (7 s
of an 11 s `--help` on 2 busy cores). Help above a command (`python -m core --help`, `python -m core zoo -h`) and
a missing or mistyped command need only the names, so they are answered from this tree alone; the whole parser
(core/cli/parser.py) reads its help texts from here too.
"""

from __future__ import annotations

from core.cli.terminal import Parser

# command -> its help, or (its help, {action: help}) for a command with actions
COMMANDS: dict[str, str | tuple[str, dict[str, str]]] = {
    "zoo": (
        "generate, import or describe a model zoo",
        {
            "generate": "train a zoo of small CNNs or ResNets, all models at once",
            "import": "import a zoo in the public model-zoo layout (one folder per model)",
            "info": "summarise a workspace's zoo",
        },
    ),
    "ae": (
        "train or evaluate a hyper-representation autoencoder",
        {
            "train": "train the autoencoder on the workspace's zoo, then map and evaluate it",
            "eval": "held-out reconstruction and property probes of a run",
            "embed": "re-map a SANE run with another aggregation of its token latents",
        },
    ),
    "sample": "sample new models from the embedding, evaluate and fine-tune them",
    "workspace": (
        "pack a workspace into one zip file, or unpack one",
        {
            "pack": "write the workspace (without resumable training state) to a zip",
            "unpack": "extract a packed workspace into a new folder",
        },
    ),
    "export": "bundle a samples run: weight files, model.py and a model card",
    "ensemble": "ensembles of a samples run beside anchors, noise and a deep ensemble",
}
PROG = "python -m core"
DESCRIPTION = "Hyper-representations of model zoos."


def help_of(command: str, action: str | None = None) -> str:
    """The one-line help of a command, or of one of its actions."""
    entry = COMMANDS[command]
    text, actions = (entry, {}) if isinstance(entry, str) else entry
    return actions[action] if action else text


def names_a_command(argv: list[str]) -> bool:
    """Whether the words before the first option name a whole command (an action where the command has them):
    only then are its options needed, and with them the engine."""
    words = []
    for token in argv:
        if token.startswith("-"):
            break
        words.append(token)
    entry = COMMANDS.get(words[0]) if words else None
    if entry is None:
        return False
    return isinstance(entry, str) or (len(words) > 1 and words[1] in entry[1])


def outline_parser() -> Parser:
    """The command tree without options: its help is the whole parser's above the commands, and it refuses a
    missing or unknown command as the whole parser would."""
    parser = Parser(prog=PROG, description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command, entry in COMMANDS.items():
        sub = commands.add_parser(command, help=help_of(command))
        if not isinstance(entry, str):
            actions = sub.add_subparsers(dest=f"{command}_command", required=True, metavar="ACTION")
            for action in entry[1]:
                actions.add_parser(action, help=help_of(command, action))
    return parser
