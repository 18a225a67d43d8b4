"""The command line of the GPU check, ``python -m searchers.tools.gpu_check --out DIR
[--dry-run] [--only ITEM,...] [--images SPEC] [--device cuda]``: parses the options, runs
:func:`searchers.tools.gpu_check.runner.run_check` and prints one line per item. Exit status 0,
1 when an item failed or timed out, 2 on bad input (e.g. an unknown ``--only`` item)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import searchers.tools.gpu_check as package
from searchers.tools.gpu_check import runner


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit status."""
    p = argparse.ArgumentParser(prog="python -m searchers.tools.gpu_check",
                                description=package.__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder for gpu_check.json and gpu_check.md")
    p.add_argument("--dry-run", action="store_true",
                   help="every item on the CPU at tiny sizes (seconds; for the tests)")
    p.add_argument("--only", default="", help="comma-separated items: "
                   + ", ".join(i.name for i in runner.ITEMS))
    p.add_argument("--images", help="images for the protocol items (as proxies.profile.command "
                   "--images); default Set14 HR where present, else default:val")
    p.add_argument("--device", default="cuda", help="the CUDA device (default cuda)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s", datefmt="%H:%M:%S")
    only = [s.strip() for s in args.only.split(",") if s.strip()] or None
    try:
        payload = runner.run_check(Path(args.out), dry_run=args.dry_run, only=only,
                                   images=args.images, device=args.device)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for r in payload["items"]:
        print(f"{r['name']:<18} {r['status']:<8} {r['seconds']:6.1f} s  {r['reason'] or ''}")
    print(f"wrote {Path(args.out) / 'gpu_check.json'} and {Path(args.out) / 'gpu_check.md'}")
    return 1 if any(r["status"] in ("failed", "timeout") for r in payload["items"]) else 0
