"""The `convkit` command. Subcommands register themselves in _COMMANDS."""
from __future__ import annotations

import argparse
import json
import sys


def _cmd_info(args) -> int:
    from . import info

    data = info()
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    cuda = "compiled in" if data["cuda_compiled"] else "not compiled in"
    usable = ", ".join(data["cuda_devices"]) if data["cuda_usable"] else f"no usable device ({data['cuda_reason']})"
    print(f"convkit {data['version']}")
    print(f"  compiler:     {data['compiler']}" + (" (sanitized: ASan + UBSan, slow)" if data["sanitized"] else ""))
    print(f"  threads:      {data['num_threads']}")
    routes = "" if data["route_isa"] == data["cpu_isa"] else f" (routes of {data['route_isa']}, emulated)"
    print(f"  cpu isa:      {data['cpu_isa']}{routes}")
    print(f"  cuda:         {cuda}")
    print(f"  cuda device:  {usable}")
    return 0


def _add_info(sub):
    p = sub.add_parser("info", help="version, compiler, threads, CPU instruction set, CUDA status")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=_cmd_info)


def _add_bench(sub):
    p = sub.add_parser("bench", help="time convkit's CPU kernels against PyTorch side by side", add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=lambda a: __import__("convkit.bench", fromlist=["main"]).main(a.rest))


from .summary import add_cli as _add_summary  # noqa: E402
from .train import add_cli as _add_train  # noqa: E402
from .analysis.report import add_cli as _add_analyze  # noqa: E402

# Each entry adds one subcommand to the parser; other modules append theirs here.
_COMMANDS = [_add_info, _add_bench, _add_train, _add_summary, _add_analyze]
_COMMANDS.append(lambda sub: __import__("convkit.attacks.cli", fromlist=["_"]).add_parser(sub))  # convkit attack
_COMMANDS.append(lambda sub: __import__("convkit.style", fromlist=["_add_cli"])._add_cli(sub))  # convkit style
_COMMANDS.append(lambda sub: __import__("convkit.demo", fromlist=["add_cli"]).add_cli(sub))  # convkit demo


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="convkit", description="convkit: a small, fast CNN engine")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in _COMMANDS:
        add(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as e:
        print(f"convkit {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
