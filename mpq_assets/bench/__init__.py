"""``mpq bench``: the platform against the loop a researcher writes by hand, on identical work.

Two paths run the same sweep (items x codecs x target ratios, quality metrics, a
task's model), each in a fresh process:

(a) ``baseline``: the straightforward sequential loop (plain bisection rate
    control, one item at a time, no batching, no caching);
(b) ``platform``: the functions the Dagster assets call, for every partition,
    writing to a real DuckDB ResultsStore.

The harness prints wall time per stage, items/s, peak memory and (a)/(b), and
checks that both paths produced the same numbers (achieved bytes, quality
values, predictions, task scores): any mismatch makes the exit status 1.
docs/performance.md has the measured tables.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sweep", choices=["image", "speech"], default="image",
                        help="image: demo_images with PSNR, MS-SSIM, LPIPS-Alex and EfficientNet-Lite0; speech: "
                        "demo_speech with SNR, SI-SDR, STOI and Whisper tiny.en")
    parser.add_argument("--codecs", nargs="*", help="default: every codec of the sweep's modality that is ready here")
    parser.add_argument("--ratios", nargs="*", help="default: the whole grid 20x ... 1000x")
    parser.add_argument("--metrics", nargs="*", help="default: the sweep's metrics")
    parser.add_argument("--subset", type=int, help="only the first N items of the demo set")
    parser.add_argument("--scale", type=int, default=1, help="K copies of every item, distinct ids (memory check)")
    parser.add_argument("--repeat", type=int, default=1, help="run both paths N times, alternating; report the fastest")
    parser.add_argument("--workers", type=int, help="platform worker processes (default: MPQ_WORKERS or the cores)")
    parser.add_argument("--torch-threads", type=int, help="torch threads in both paths (default: torch's own)")
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (bitstreams, DuckDB, results)")
    parser.add_argument("--json", metavar="FILE", help="also write the report as JSON")


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from mpq_assets.bench.harness import run_bench
    from mpq_assets.bench.spec import default_spec

    spec = default_spec(args.sweep, codecs=args.codecs, ratios=args.ratios, metrics=args.metrics,
                        subset=args.subset, scale=max(1, args.scale), workers=args.workers,
                        torch_threads=args.torch_threads)
    if not spec.codecs:
        print(f"no {spec.modality} codec is ready here: nothing to benchmark")
        return 2
    report = run_bench(spec, root=args.keep, repeat=max(1, args.repeat))
    print(report.table())
    if args.json:
        Path(args.json).write_text(json.dumps(report.to_json(), indent=2, default=str))
    return 1 if report.comparison.mismatches else 0
