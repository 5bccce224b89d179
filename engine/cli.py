"""The `lumen3d` command: one subcommand per job."""
from __future__ import annotations

import logging
import sys

from engine.errors import InputError


def _commands() -> dict:
    from engine.jobs.bench import BenchJob
    from engine.jobs.demo import DemoJob
    from engine.jobs.fit_body import FitBodyJob
    from engine.jobs.inspect import InspectJob
    from engine.jobs.sfm import SfmJob
    from engine.jobs.train import ExportJob, TrainJob
    from engine.jobs.view import ViewJob

    return {"demo": DemoJob, "sfm": SfmJob, "train": TrainJob, "export": ExportJob,
            "inspect": InspectJob, "view": ViewJob, "fit-body": FitBodyJob,
            "bench": BenchJob}


def _parse(args: list[str]):
    """One tyro subcommand per job; a job whose config has a subcommand field nests (bench raster)."""
    from typing import Annotated, Union

    import tyro

    commands = Union[tuple(Annotated[cls, tyro.conf.subcommand(name, description=(cls.__doc__ or "").split("\n")[0])]
                           for name, cls in _commands().items())]
    return tyro.cli(commands, args=args, prog="lumen3d", config=(tyro.conf.OmitSubcommandPrefixes,),
                    description="lumen3d: reconstruct scenes from photos, fast on a CPU. "
                                "Run `lumen3d demo` for the main job on built-in data.")


def _log_to_file(message: str) -> None:
    for h in logging.getLogger("lumen3d").handlers:
        if isinstance(h, logging.FileHandler):
            h.emit(logging.LogRecord("lumen3d", logging.ERROR, __file__, 0, message, None, None))


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        _parse(args).run()
        return 0
    except InputError as e:
        if debug:
            raise
        message = f"lumen3d: error: {e}".replace("\n", " ")
    except KeyboardInterrupt:
        message = "lumen3d: interrupted"
        print(message, file=sys.stderr)
        return 130
    except Exception as e:  # a bug, not bad input: still one line, the traceback with --debug
        if debug:
            raise
        message = f"lumen3d: internal error: {e.__class__.__name__}: {e} (rerun with --debug for the traceback)"
        message = message.replace("\n", " ")
        print(message, file=sys.stderr)
        _log_to_file(message)
        return 1
    print(message, file=sys.stderr)
    _log_to_file(message)
    return 2


if __name__ == "__main__":
    sys.exit(main())
