"""The whole command-line parser, every command with its options, and running the parsed command.

Options that set a config come from the config dataclasses (core/cli/options.py), so their defaults are the
engine's; that imports the engine (torch), so core/cli/__init__.py imports this module only for a whole command.
Messages go out through `printable`: they quote file names and contents from elsewhere, and no control character
of theirs reaches the terminal.
"""

from __future__ import annotations

import argparse
import json
import sys

import core.cli.commands as commands  # not `from core.cli`: the package imports this module
import core.cli.describe as describe
from core.cli.options import add_settings, add_variant_settings
from core.cli.outline import DESCRIPTION, PROG, help_of
from core.cli.terminal import Parser, printable
from core.cluster import ClusterConfig
from core.errors import Interrupted, UserError, os_error_message
from core.gen.config import SampleConfig
from core.gen.export import FORMATS, MEMBER_KINDS
from core.rep.distributed import reports
from core.rep.loop import TrainConfig
from core.rep.methods import KINDS, METHODS, PRESETS
from core.runtime import DEVICES, tune_cpu_allocator
from core.store.budget import DEFAULT_MEMORY_MB, set_memory_mb
from core.store.leftovers import may_exist, remove_unused_workspace
from core.zoo.generate import ZooConfig

# Every kind's aggregations (each run checks its own: core/rep/embed.py `set_aggregation`).
EMBED_AGGREGATIONS = tuple(dict.fromkeys(how for method in METHODS.values() for how in method.aggregations))


def _add_common(parser: argparse.ArgumentParser, device: bool) -> None:
    parser.add_argument("--workspace", required=True, help="workspace folder (created if needed)")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line of stdout")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--memory",
        type=int,
        default=DEFAULT_MEMORY_MB,
        metavar="MB",
        help=f"memory budget: stages read the zoo in chunks that fit it (default {DEFAULT_MEMORY_MB})",
    )
    if device:
        parser.add_argument("--device", choices=DEVICES, default="auto", help="where to compute (default: auto)")


def _command(actions, path: tuple[str, ...], run, text, device: bool = False) -> argparse.ArgumentParser:
    """The parser of one command (`path`: the command, or the command and its action), its help from the outline."""
    parser = actions.add_parser(path[-1], help=help_of(*path))
    _add_common(parser, device)
    parser.set_defaults(run_command=run, describe=text)
    return parser


def _add_force(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace --out if it is an existing file (never a workspace pack, a folder, a link or a device)",
    )


def _zoo_parsers(commands_: argparse._SubParsersAction) -> None:
    zoo = commands_.add_parser("zoo", help=help_of("zoo")).add_subparsers(
        dest="zoo_command", required=True, metavar="ACTION"
    )
    gen = _command(zoo, ("zoo", "generate"),
                   commands.zoo_generate, describe.describe_zoo, device=True)  # fmt: skip
    add_settings(gen, ZooConfig)
    add_settings(gen, ClusterConfig)
    imp = _command(zoo, ("zoo", "import"),
                   commands.zoo_import, describe.describe_zoo)  # fmt: skip
    imp.add_argument("--from", dest="source", required=True, help="folder holding the model folders")
    imp.add_argument("--dataset", default=None, help="local dataset folder the zoo was trained on (for fine-tuning)")
    for command in (gen, imp):
        command.add_argument(
            "--replace",
            action="store_true",
            help="replace the workspace's zoo (its runs become stale; they are listed)",
        )
    _command(zoo, ("zoo", "info"), commands.zoo_describe, describe.describe_zoo)


def _ae_parsers(commands_: argparse._SubParsersAction) -> None:
    ae = commands_.add_parser("ae", help=help_of("ae")).add_subparsers(
        dest="ae_command", required=True, metavar="ACTION"
    )
    train = _command(ae, ("ae", "train"),
                     commands.ae_train, describe.describe_eval, device=True)  # fmt: skip
    kinds = "; ".join(f"{kind}: {method.title}" for kind, method in METHODS.items())
    train.add_argument("--kind", choices=KINDS, default=KINDS[0], help=kinds)
    train.add_argument(
        "--nproc",
        type=int,
        default=None,
        help="train in N processes on this machine (torchrun; DDP: gloo on CPUs, NCCL on GPUs)",
    )
    # --run-name too: torchrun's parser reads an abbreviation of its own --run-path in a bare --run
    train.add_argument(
        "--run", "--run-name", default=None, help="run name (default: derived from the settings, so reruns resume)"
    )
    train.add_argument("--preset", choices=PRESETS, default=None,
                       help="the paper's sizes (sane: paper for ResNets, paper-cnn for small CNNs); GPU only; "
                       "options given beside it override its values")  # fmt: skip
    add_variant_settings(train, commands.KIND_CONFIGS)
    add_settings(train, TrainConfig, unset=True)  # left out, a preset's value applies (commands._ae_settings)
    evaluate = _command(ae, ("ae", "eval"),
                        commands.ae_eval, describe.describe_eval, device=True)  # fmt: skip
    evaluate.add_argument("--run", default=None, help="run name (default: the latest finished run)")
    evaluate.add_argument("--refresh", action="store_true", help="recompute instead of reading the stored figures")
    embed = _command(ae, ("ae", "embed"),
                     commands.ae_embed, describe.describe_embed, device=True)  # fmt: skip
    embed.add_argument("--run", default=None, help="run name (default: the latest finished run)")
    embed.add_argument("--aggregation", choices=EMBED_AGGREGATIONS, required=True,
                       help="how token latents make an embedding")  # fmt: skip


def _other_parsers(commands_: argparse._SubParsersAction) -> None:
    sample = _command(commands_, ("sample",),
                      commands.sample, describe.describe_samples, device=True)  # fmt: skip
    sample.add_argument("--run", default=None, help="autoencoder run (default: the latest finished)")
    add_settings(sample, SampleConfig)
    add_settings(sample, ClusterConfig)
    space = commands_.add_parser("workspace", help=help_of("workspace"))
    spaces = space.add_subparsers(dest="workspace_command", required=True, metavar="ACTION")
    pack = _command(spaces, ("workspace", "pack"),
                    commands.workspace_pack, describe.describe_pack)  # fmt: skip
    pack.add_argument("--out", required=True, help="the zip file to write")
    _add_force(pack)
    unpack = _command(spaces, ("workspace", "unpack"),
                      commands.workspace_unpack, describe.describe_pack)  # fmt: skip
    unpack.add_argument("--from", dest="source", required=True, help="the zip file made by `workspace pack`")
    export = _command(commands_, ("export",),
                      commands.export, describe.describe_export, device=True)  # fmt: skip
    export.add_argument("--samples", required=True, help="samples run name (printed by `sample`)")
    export.add_argument("--format", choices=FORMATS, default=FORMATS[0])
    export.add_argument("--out", required=True, help="the zip file to write")
    _add_force(export)
    export.add_argument(
        "--ensemble", action="store_true", help="one ensemble of the run's models: model.py's predict averages them"
    )
    export.add_argument("--members", choices=MEMBER_KINDS, default=MEMBER_KINDS[0], help="with --ensemble: which")
    ensemble = _command(commands_, ("ensemble",),
                        commands.ensemble, describe.describe_ensembles, device=True)  # fmt: skip
    ensemble.add_argument("--samples", required=True, help="samples run name (printed by `sample`)")
    ensemble.add_argument("--refresh", action="store_true", help="recompute instead of reading the stored figures")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description=DESCRIPTION)
    commands_ = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _zoo_parsers(commands_)
    _ae_parsers(commands_)
    _other_parsers(commands_)
    return parser


def run(argv: list[str]) -> int:
    """Parse a whole command's arguments and run it: the exit code (core/cli/__init__.py `main`, which turns a
    Ctrl-C at any moment into one line and exit 130)."""
    args = build_parser().parse_args(argv)
    tune_cpu_allocator()
    existed = may_exist(args.workspace)
    try:
        set_memory_mb(args.memory)
        if getattr(args, "nproc", None) is not None:
            return commands.ae_launch(args, argv)
        result = args.run_command(args)
    except (UserError, OSError, MemoryError) as exc:
        if not existed:  # a folder this command made and left without a zoo or a run goes again
            remove_unused_workspace(args.workspace)
        if reports():  # under torchrun the other processes meet the same error; rank 0 says it once
            print(f"error: {printable(_message(exc, args.workspace))}", file=sys.stderr)
        return 2
    except Interrupted as exc:
        print(f"interrupted: {printable(str(exc))}", file=sys.stderr)
        return 130
    if result is None:  # a torchrun process other than rank 0: rank 0 reports
        return 0
    if args.json:
        print(json.dumps(result))
    else:
        print("\n".join(args.describe(result)))
    return 0


def _message(exc: Exception, workspace: str) -> str:
    """The one line an error becomes: a UserError's own message, an operating-system error's path (the workspace
    where the error names none) and remedy."""
    if isinstance(exc, MemoryError):
        return "not enough memory for this request; ask for less (fewer models or samples)"
    return os_error_message(exc, f"{workspace} (the workspace)") if isinstance(exc, OSError) else str(exc)
