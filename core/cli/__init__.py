"""`python -m core ...`: the command-line front end over the same functions the app calls.

Exit codes: 0 success, 2 bad input (one line on stderr saying what and where), 130 interrupted (resumable).
With --json the last line of stdout is one JSON object. Options that set a config come from the config
dataclasses (core/cli/options.py), so their defaults are the engine's. Messages go out through `printable`:
they quote file names and contents from elsewhere, and no control character of theirs reaches the terminal.
"""

from __future__ import annotations

import argparse
import json
import sys

from core.cli import commands, describe
from core.cli.describe import printable
from core.cli.options import add_settings, add_variant_settings
from core.cluster import ClusterConfig
from core.errors import Interrupted, UserError
from core.gen.config import SampleConfig
from core.gen.export import FORMATS, MEMBER_KINDS
from core.rep.distributed import reports
from core.rep.loop import TrainConfig
from core.rep.methods import KINDS, METHODS, PRESETS
from core.rep.sane import AGGREGATIONS
from core.runtime import DEVICES, tune_cpu_allocator
from core.store.budget import DEFAULT_MEMORY_MB, set_memory_mb
from core.zoo.generate import ZooConfig


class _Parser(argparse.ArgumentParser):
    """argparse with our error format: one line, `error: ...`, exit 2 (argparse prints its usage first)."""

    def error(self, message: str):
        print(f"error: {printable(self.prog)}: {printable(message)} (see --help)", file=sys.stderr)
        raise SystemExit(2)


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


def _command(actions, name: str, help_text: str, run, text, device: bool = False) -> argparse.ArgumentParser:
    parser = actions.add_parser(name, help=help_text)
    _add_common(parser, device)
    parser.set_defaults(run_command=run, describe=text)
    return parser


def _zoo_parsers(commands_: argparse._SubParsersAction) -> None:
    zoo = commands_.add_parser("zoo", help="generate, import or describe a model zoo").add_subparsers(
        dest="zoo_command", required=True, metavar="ACTION"
    )
    gen = _command(zoo, "generate", "train a zoo of small CNNs or ResNets, all models at once",
                   commands.zoo_generate, describe.describe_zoo, device=True)  # fmt: skip
    add_settings(gen, ZooConfig)
    add_settings(gen, ClusterConfig)
    imp = _command(zoo, "import", "import a zoo in the public model-zoo layout (one folder per model)",
                   commands.zoo_import, describe.describe_zoo)  # fmt: skip
    imp.add_argument("--from", dest="source", required=True, help="folder holding the model folders")
    imp.add_argument("--dataset", default=None, help="local dataset folder the zoo was trained on (for fine-tuning)")
    for command in (gen, imp):
        command.add_argument(
            "--replace",
            action="store_true",
            help="replace the workspace's zoo (its runs become stale; they are listed)",
        )
    _command(zoo, "info", "summarise a workspace's zoo", commands.zoo_describe, describe.describe_zoo)


def _ae_parsers(commands_: argparse._SubParsersAction) -> None:
    ae = commands_.add_parser("ae", help="train or evaluate a hyper-representation autoencoder").add_subparsers(
        dest="ae_command", required=True, metavar="ACTION"
    )
    train = _command(ae, "train", "train the autoencoder on the workspace's zoo, then map and evaluate it",
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
    add_settings(train, TrainConfig)
    evaluate = _command(ae, "eval", "held-out reconstruction and property probes of a run",
                        commands.ae_eval, describe.describe_eval, device=True)  # fmt: skip
    evaluate.add_argument("--run", default=None, help="run name (default: the latest finished run)")
    evaluate.add_argument("--refresh", action="store_true", help="recompute instead of reading the stored figures")
    embed = _command(ae, "embed", "re-map a SANE run with another aggregation of its token latents",
                     commands.ae_embed, describe.describe_embed, device=True)  # fmt: skip
    embed.add_argument("--run", default=None, help="run name (default: the latest finished run)")
    embed.add_argument("--aggregation", choices=AGGREGATIONS, required=True, help="how token latents make an embedding")


def _other_parsers(commands_: argparse._SubParsersAction) -> None:
    sample = _command(commands_, "sample", "sample new models from the embedding, evaluate and fine-tune them",
                      commands.sample, describe.describe_samples, device=True)  # fmt: skip
    sample.add_argument("--run", default=None, help="autoencoder run (default: the latest finished)")
    add_settings(sample, SampleConfig)
    add_settings(sample, ClusterConfig)
    space = commands_.add_parser("workspace", help="pack a workspace into one zip file, or unpack one")
    spaces = space.add_subparsers(dest="workspace_command", required=True, metavar="ACTION")
    pack = _command(spaces, "pack", "write the workspace (without resumable training state) to a zip",
                    commands.workspace_pack, describe.describe_pack)  # fmt: skip
    pack.add_argument("--out", required=True, help="the zip file to write")
    unpack = _command(spaces, "unpack", "extract a packed workspace into a new folder",
                      commands.workspace_unpack, describe.describe_pack)  # fmt: skip
    unpack.add_argument("--from", dest="source", required=True, help="the zip file made by `workspace pack`")
    export = _command(commands_, "export", "bundle a samples run: weight files, model.py and a model card",
                      commands.export, describe.describe_export, device=True)  # fmt: skip
    export.add_argument("--samples", required=True, help="samples run name (printed by `sample`)")
    export.add_argument("--format", choices=FORMATS, default=FORMATS[0])
    export.add_argument("--out", required=True, help="the zip file to write")
    export.add_argument(
        "--ensemble", action="store_true", help="one ensemble of the run's models: model.py's predict averages them"
    )
    export.add_argument("--members", choices=MEMBER_KINDS, default=MEMBER_KINDS[0], help="with --ensemble: which")
    ensemble = _command(commands_, "ensemble", "ensembles of a samples run beside anchors, noise and a deep ensemble",
                        commands.ensemble, describe.describe_ensembles, device=True)  # fmt: skip
    ensemble.add_argument("--samples", required=True, help="samples run name (printed by `sample`)")
    ensemble.add_argument("--refresh", action="store_true", help="recompute instead of reading the stored figures")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m core", description="Hyper-representations of model zoos.")
    commands_ = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _zoo_parsers(commands_)
    _ae_parsers(commands_)
    _other_parsers(commands_)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    tune_cpu_allocator()
    try:
        set_memory_mb(args.memory)
        if getattr(args, "nproc", None) is not None:
            return commands.ae_launch(args, sys.argv[1:] if argv is None else argv)
        result = args.run_command(args)
    except UserError as exc:
        if reports():  # under torchrun the other processes meet the same error; rank 0 says it once
            print(f"error: {printable(str(exc))}", file=sys.stderr)
        return 2
    except MemoryError:
        print("error: not enough memory for this request; ask for less (fewer models or samples)", file=sys.stderr)
        return 2
    except Interrupted as exc:
        print(f"interrupted: {printable(str(exc))}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(
            "interrupted: progress is kept up to the last saved point (a zoo's last finished epoch, an autoencoder's "
            "state of a few seconds ago); run the same command to resume",
            file=sys.stderr,
        )
        return 130
    if result is None:  # a torchrun process other than rank 0: rank 0 reports
        return 0
    if args.json:
        print(json.dumps(result))
    else:
        print("\n".join(args.describe(result)))
    return 0
