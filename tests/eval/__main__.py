"""Print the evaluation table: ``python -m tests.eval [--split dev|heldout] [--real] [-v]``.

``--record`` writes the scores as the floors ``tests/test_eval_gate.py`` holds.

Without options: every split and the real pages (when they are present), one per-field table
each. ``-v`` lists the fields each page got wrong, with the expected and the produced values.
"""

from __future__ import annotations

import argparse
import json
import sys

from tests.eval import score


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.eval", description=__doc__)
    parser.add_argument("--split", choices=score.SPLITS, action="append")
    parser.add_argument("--real", action="store_true", help="only the real pages")
    parser.add_argument("-v", "--verbose", action="store_true", help="list every wrong field")
    parser.add_argument("--json", action="store_true", help="print the tables as JSON")
    parser.add_argument(
        "--record",
        action="store_true",
        help="write these scores as the gate's floors (tests/eval/baseline.json); only after "
        "a change that should move them, and say why in the commit",
    )
    args = parser.parse_args(argv)
    splits = [] if args.real and not args.split else (args.split or list(score.SPLITS))
    tables: dict[str, dict[str, float]] = {}
    for split in splits:
        results = score.score_split(split)
        tables[split] = score.summarize(results)
        if args.json:
            continue
        print(f"{split}: {len(results)} pages")
        if args.verbose:
            for result in results:
                if result.error or result.diff:
                    print(f"- {result.path.relative_to(score.PAGES)}: {result.error or ''}")
                    for row, d in result.diff.items():
                        print(f"    {row}:")
                        print(f"      expected {json.dumps(d['expected'], ensure_ascii=False)}")
                        print(f"      got      {json.dumps(d['got'], ensure_ascii=False)}")
        print("\n".join(score.render(tables[split])))
    if args.real or not args.split:
        root = score.real_pages_dir()
        if root is None:
            print("real pages: not found (set PIPELINE_REAL_PAGES)", file=sys.stderr)
        else:
            real = score.score_real(root)
            tables["real"] = score.summarize_real(real)
            if not args.json:
                print(f"real pages ({root}): {len(real)} pages, recall of expected fields")
                for result in real:
                    failed = [k for k, ok in result.checks.items() if not ok]
                    if failed and args.verbose:
                        print(f"- {result.name}: missed {', '.join(failed)} {result.error or ''}")
                counts: dict[str, int] = {}
                for result in real:
                    for key in result.checks:
                        counts[key] = counts.get(key, 0) + 1
                print("\n".join(score.render(tables["real"], counts)))
    if args.json:
        print(json.dumps(tables, indent=1))
    if args.record:
        if args.split or args.real or "real" not in tables:
            parser.error("--record scores every split and the real pages: give no other option")
        score.record_baseline(tables)
        print(f"floors written to {score.BASELINE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
