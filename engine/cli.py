"""The `lumen3d` command: one subcommand per job."""
from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import warnings

from engine.errors import LOST_PEER_STATUS, InputError, PeerLost, Silent


def _commands() -> dict:
    from engine.jobs.bench import BenchJob
    from engine.jobs.demo import DemoJob
    from engine.jobs.fit_body import FitBodyJob
    from engine.jobs.generate import GenerateJob
    from engine.jobs.inspect import InspectJob
    from engine.jobs.paint import PaintJob
    from engine.jobs.sfm import SfmJob
    from engine.jobs.train import ExportJob, TrainJob
    from engine.jobs.view import ViewJob

    return {"demo": DemoJob, "sfm": SfmJob, "train": TrainJob, "generate": GenerateJob,
            "paint": PaintJob, "export": ExportJob,
            "inspect": InspectJob, "view": ViewJob, "fit-body": FitBodyJob,
            "bench": BenchJob}


def _parse(args: list[str]):
    """One tyro subcommand per job; a job whose config has a subcommand field nests (bench raster)."""
    from typing import Annotated, Union

    import tyro

    commands = Union[tuple(Annotated[cls, tyro.conf.subcommand(name, description=(cls.__doc__ or "").split("\n")[0])]
                           for name, cls in _commands().items())]
    box = io.StringIO()
    try:
        with contextlib.redirect_stderr(box):
            return tyro.cli(commands, args=args, prog="lumen3d", config=(tyro.conf.OmitSubcommandPrefixes,),
                            description="lumen3d: reconstruct scenes from photos, fast on a CPU. "
                                        "Run `lumen3d demo` for the main job on built-in data.")
    except SystemExit as e:
        if e.code in (0, None):
            raise
        raise UsageError(box.getvalue()) from None


class UsageError(Exception):
    """A command line tyro could not parse; its boxed message, said in one line."""

    def __init__(self, box: str):
        self.box = box
        rows = [ln.strip().strip("│╭╮╰╯").strip() for ln in box.splitlines()]
        rows = ["---" if r and set(r) <= set("─") else r.strip("─ ") for r in rows]
        rows = [r for r in rows if r]
        title, rest = (rows[0], rows[1:]) if rows else ("usage error", [])
        body = rest[:rest.index("---")] if "---" in rest else rest
        message = body[0] if body else title
        if message.endswith(":") and len(body) > 1:  # "Missing from lumen3d inspect:" then the argument
            message = f"{message} {body[1]}"
        hint = "lumen3d --help"
        for k, r in enumerate(rest):
            if r.startswith("For full helptext"):
                after = r.split(" run", 1)[-1].split(" see", 1)[-1].strip(" :")
                hint = after or (rest[k + 1] if k + 1 < len(rest) else hint)
        super().__init__(f"{message} (see {hint})")


def _log_to_file(message: str) -> None:
    for h in logging.getLogger("lumen3d").handlers:
        if isinstance(h, logging.FileHandler):
            h.emit(logging.LogRecord("lumen3d", logging.ERROR, __file__, 0, message, None, None))


def _warning_to_log(message, category, filename, lineno, file=None, line=None) -> None:
    logging.getLogger("lumen3d").debug("%s: %s (%s:%d)", category.__name__, message, filename, lineno)


def _rank_tag() -> str:
    """' (rank R)' in the messages of a run's processes other than rank 0."""
    rank = os.environ.get("RANK", "0") if int(os.environ.get("WORLD_SIZE", "1")) > 1 else "0"
    return "" if rank == "0" else f" (rank {rank})"


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    from engine.jobs import COMMAND_LINE

    COMMAND_LINE[:] = args
    debug = "--debug" in args
    if not debug:  # library warnings (numpy's RuntimeWarnings, ...) go to the run's log, not the terminal
        warnings.showwarning = _warning_to_log
    try:
        job = _parse(args)
        if hasattr(job, "check"):  # option ranges, before anything is read or made
            job.check()
        status = job.run()
        return status if type(status) is int else 0  # a job that ran others (--nproc) passes on their status
    except UsageError as e:
        if debug:
            print(e.box, file=sys.stderr, end="")
        print(f"lumen3d: error: {e}", file=sys.stderr)
        return 2
    except InputError as e:
        if isinstance(e, Silent):  # rank 0 said it
            return 2
        if isinstance(e, PeerLost) and os.environ.get("LUMEN3D_LAUNCHER") and not debug:
            return LOST_PEER_STATUS  # the launcher says which process failed
        if debug:
            raise
        message = f"lumen3d: error{_rank_tag()}: {e}".replace("\n", " ")
        print(message, file=sys.stderr)
        _log_to_file(message)
        from engine.runs import discard_failed_starts

        discard_failed_starts()
        return 2
    except KeyboardInterrupt:
        message = "lumen3d: interrupted"
        print(message, file=sys.stderr)
        return 130
    except Exception as e:  # a bug, not bad input: still one line, the traceback with --debug
        if debug:
            raise
        message = (f"lumen3d: internal error{_rank_tag()}: {e.__class__.__name__}: {e} "
                   f"(rerun with --debug for the traceback)")
        message = message.replace("\n", " ")
        print(message, file=sys.stderr)
        _log_to_file(message)
        return 1


if __name__ == "__main__":
    sys.exit(main())
