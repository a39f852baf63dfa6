"""The ``attncomp`` command.

    attncomp list
    attncomp show VARIANT [--q-len N] [--kv-len N] [--param k=v ...] [--head H]
    attncomp analyze VARIANT --q-len 32k [--kv-len N] [--block 128,128] [--json] [--png FILE]
    attncomp compile VARIANT [--backend NAME] [-o FILE] [--block 64,64]
    attncomp simulate VARIANT --hardware h100,b200 --q-len 32k --heads 16 --head-dim 128 [--sweep block=64,128]
    attncomp report [VARIANT] [--q-len 32k] [--hardware h100,b200] [--out DIR]

VARIANT is a built-in name (``attncomp list``) or ``path/to/file.py[:name]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys

from .errors import AttncompError
from .ir.arguments import LIMIT


def parse_size(text: str) -> int:
    """``4096``, ``32k`` (32768) or ``1m`` (1048576); at least 1."""
    m = re.fullmatch(r"\s*(\d+)\s*([kKmM]?)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (use e.g. 4096, 32k, 1m)")
    size = int(m.group(1)) * {"": 1, "k": 1024, "m": 1 << 20}[m.group(2).lower()]
    if not 1 <= size <= LIMIT:
        raise argparse.ArgumentTypeError(f"a size must be in 1..{LIMIT}, got {text!r}")
    return size


def int_in(low: int, high: int):
    """An argparse type: an int in ``low..high``.

    >>> int_in(0, 7)("3")
    3
    """
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be in {low}..{high}, got {value}")
        return value
    return parse


positive = int_in(1, LIMIT)     # heads, batch, head dim
index = int_in(0, LIMIT - 1)    # which head or batch element to draw


def _finite(value):
    """``value`` with every inf/nan float replaced by None: JSON has no Infinity (a mask that
    keeps nothing has an infinite FLOP bound), and ``json.dumps`` would print it anyway."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def dump_json(value) -> str:
    """Strict JSON (``allow_nan=False``): non-finite numbers become null."""
    return json.dumps(_finite(value), indent=2, default=str, allow_nan=False)


def _tensor_files(pairs: list[str] | None) -> dict:
    """``--tensor NAME=FILE`` (``.pt`` saved by ``torch.save``, ``.npy`` by ``numpy.save``):
    values for a variant's declared runtime tensors (``ac.tensor``)."""
    import numpy as np
    import torch

    out = {}
    for pair in pairs or []:
        name, sep, path = pair.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise AttncompError(f"--tensor takes NAME=FILE.pt or NAME=FILE.npy, got {pair!r}")
        path = path.strip()
        try:
            if path.endswith(".npy"):
                value = torch.from_numpy(np.load(path, allow_pickle=False))
            elif path.endswith((".pt", ".pth")):
                value = torch.load(path, map_location="cpu", weights_only=True)
            else:
                raise AttncompError(f"--tensor {name}: {path} is neither .pt (torch.save) nor .npy (numpy.save)")
        except (OSError, ValueError, RuntimeError, EOFError) as err:
            raise AttncompError(f"--tensor {name}: cannot read {path}: {err}") from None
        if not isinstance(value, torch.Tensor):
            raise AttncompError(f"--tensor {name}: {path} holds a {type(value).__name__}, not a tensor")
        out[name.strip()] = value
    return out


def _params(pairs: list[str]) -> dict:
    from .variants.loader import parse_value

    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise AttncompError(f"--param takes key=value, got {pair!r}")
        out[key.strip()] = parse_value(value.strip())
    return out


def _group_key(group: str):
    return group[0], int(group[1:])


def cmd_list(args) -> int:
    from .variants import REGISTRY

    rows = sorted(REGISTRY.values(), key=lambda v: (_group_key(v.group), v.name))
    width = max(len(v.name) for v in rows)
    for v in rows:
        print(f"{v.group:<4} {v.name:<{width}}  {v.summary}")
    return 0


def example_tensors(loaded, q_len: int, kv_len: int, batch: int = 1, heads: int = 1, given: dict | None = None) -> dict:
    """Runtime tensors to run ``loaded`` at these sizes: ``given`` (``--tensor``) first, then
    the registry's seeded examples for built-ins, the captured tensors for user Programs."""
    program = loaded.program
    given = dict(given or {})
    unknown = sorted(set(given) - set(program.tensors))
    if unknown:
        raise AttncompError(f"--tensor {', '.join(unknown)}: {program.name} declares no such runtime tensor "
                            f"(it declares: {', '.join(program.tensors) or 'none'})")
    if loaded.variant is not None:
        ex = loaded.variant.example(q_len, kv_len, batch=batch, heads=heads)
        return loaded.variant.example_tensors(ex, **loaded.arguments) | given
    tensors = dict(program.bindings) | given
    missing = [str(t) for name, t in program.tensors.items() if name not in tensors]
    if missing:
        raise AttncompError(f"{program.name} reads runtime tensor(s) {', '.join(missing)} that have no value; "
                            f"pass each as --tensor NAME=FILE.pt (torch.save) or NAME=FILE.npy (numpy.save)")
    return tensors


SHOW_DENSE_LIMIT = 1 << 22  # pairs: above this `show` draws from the exact tile analysis instead


def cmd_show(args) -> int:
    from .ir.analysis import analyze
    from .ir.evaluate import dense_mask
    from .ir.picture import mask_picture
    from .variants.loader import load_variant

    loaded = load_variant(args.variant, _params(args.param))
    program = loaded.program
    if not (loaded.variant and loaded.variant.length) and not args.q_len:
        args.q_len = 64
    q_len, kv_len = _lengths(loaded, args)
    print(program)
    if program.mask is None:
        print(f"(no mask: every query attends all {kv_len} keys)")
        return 0
    batch, heads = args.batch_index + 1, args.head + 1
    tensors = example_tensors(loaded, q_len, kv_len, batch=batch, heads=heads, given=_tensor_files(args.tensor))
    where = f"q_len={q_len}, kv_len={kv_len} (batch {args.batch_index}, head {args.head})"
    if q_len * kv_len > SHOW_DENSE_LIMIT:
        # one picture cell per tile of the analysis: the same drawing, without q_len x kv_len values
        block = (-(-q_len // 64), -(-kv_len // 64))
        layout = analyze(program, q_len, kv_len, block, tensors=tensors, batch=batch, heads=heads)
        b, h = min(args.batch_index, layout.shape[0] - 1), min(args.head, layout.shape[1] - 1)
        print(f"mask at {where}, drawn from the exact tile analysis ({block[0]}x{block[1]} tiles); "
              f"mask density over all {layout.shape[0]}x{layout.shape[1]} groups: {layout.mask_density_text(percent=True)}")
        print(layout.show(b=b, h=h))
        return 0
    grid = dense_mask(program.mask, q_len, kv_len, tensors, batch=batch, heads=heads,
                      variant=program.name)[args.batch_index, args.head]
    kept = int(grid.sum())
    print(f"mask at {where}: {kept} of {q_len * kv_len} pairs ({100.0 * kept / (q_len * kv_len):.1f}%)")
    print(mask_picture(grid))
    return 0


def _blocks(text: str) -> tuple[int, int]:
    parts = [parse_size(x) for x in text.split(",")]
    if len(parts) not in (1, 2):
        raise argparse.ArgumentTypeError(f"--block takes BLOCK_M[,BLOCK_N], got {text!r}")
    return (parts[0], parts[-1])


def _lengths(loaded, args) -> tuple[int, int]:
    length = loaded.variant.length(loaded.arguments) if loaded.variant and loaded.variant.length else None
    q_len = length or args.q_len or 4096
    return q_len, length or args.kv_len or q_len


def cmd_analyze(args) -> int:
    from .ir.analysis import analyze
    from .variants.loader import load_variant

    loaded = load_variant(args.variant, _params(args.param))
    q_len, kv_len = _lengths(loaded, args)
    if args.head >= args.heads:
        raise AttncompError(f"--head {args.head} is not one of the {args.heads} heads (0..{args.heads - 1})")
    tensors = example_tensors(loaded, q_len, kv_len, batch=args.batch, heads=args.heads,
                              given=_tensor_files(args.tensor))
    layout = analyze(loaded.program, q_len, kv_len, args.block, tensors=tensors, batch=args.batch, heads=args.heads)
    if args.png:
        layout.save_png(args.png, h=min(args.head, layout.shape[1] - 1))
    summary = layout.summary()
    if args.json:
        print(dump_json(summary | {"stats": layout.stats}))
        return 0
    c = summary["counts"]
    total = sum(c.values())
    print(f"{layout.name}: q_len={q_len} kv_len={kv_len} block={args.block[0]}x{args.block[1]} "
          f"groups(batch x heads)={layout.shape[0]}x{layout.shape[1]}")
    print(f"tiles: {c['partial']} partial, {c['full']} full, {c['empty']} empty of {total} "
          f"({100.0 * (c['partial'] + c['full']) / total:.2f}% visited)")
    if layout.selection == "structural":
        print("data-dependent selection: the layout every choice fits in (empty: no choice reaches it; full: "
              "chosen whatever the data; partial: the data decides)")
    print(f"density (visited tile area): {summary['density']:.4f}   mask density (kept pairs): "
          f"{layout.mask_density_text()}")
    print(f"ratios: {summary['tile_bound']:.2f}x all / visited tiles, {1 / max(summary['mask_density'], 1e-300):.2f}x "
          "all / kept pairs (speedup bounds need a GPU model: attncomp simulate)")
    st = layout.stats
    print(f"analysis time: {1000 * summary['analysis_time_s']:.1f} ms ({st.get('rectangles', 0)} rectangles classified, "
          f"{st.get('refined_tiles', 0)} tiles refined, {st.get('dense_boxes', 0)} boxes evaluated point by point)")
    if args.png:
        print(f"picture written to {args.png}")
    print(layout.show(h=min(args.head, layout.shape[1] - 1)))
    return 0


def cmd_compile(args) -> int:
    from .backends import compile as compile_spec
    from .variants.loader import load_variant

    loaded = load_variant(args.variant, _params(args.param))
    options = {"block": args.block} if args.block else {}
    kernel = compile_spec(loaded.program, backend=args.backend, **options)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(kernel.source)
        print(f"{loaded.program.name}: {args.backend} kernel written to {args.output} "
              f"({len(kernel.source.splitlines())} lines)")
    else:
        print(kernel.source, end="")
    return 0


def _sweep(text: str | None) -> tuple[str | None, list]:
    from .variants.loader import parse_value

    if not text:
        return None, [None]
    key, sep, values = text.partition("=")
    if not sep:
        raise AttncompError(f"--sweep takes NAME=V1,V2,..., got {text!r}")
    return key.strip(), [parse_value(v.strip()) for v in values.split(",") if v.strip()]


def _input_heads(items: list[str] | None) -> dict[str, int] | None:
    """``--input-heads K2=2`` (repeatable) as a dict."""
    out = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not value.strip().isdigit():
            raise AttncompError(f"--input-heads takes NAME=HEADS, got {item!r}")
        out[name.strip()] = int(value)
    return out or None


def cmd_simulate(args) -> int:
    from .simulator import simulate
    from .variants.loader import load_variant

    params = _params(args.param)
    key, values = _sweep(args.sweep)
    results = []
    for value in values:
        block = args.block
        if key == "block":
            block = tuple(value) if isinstance(value, tuple) else (value, value)
        elif key is not None:
            params = dict(params, **{key: value})
        loaded = load_variant(args.variant, params)
        q_len, kv_len = _lengths(loaded, args)
        tensors = example_tensors(loaded, q_len, kv_len, batch=args.batch, heads=args.heads,
                                  given=_tensor_files(args.tensor))
        for hw in args.hardware.split(","):
            est = simulate(loaded.program, hw, batch=args.batch, heads=args.heads, kv_heads=args.kv_heads,
                           q_len=q_len, kv_len=kv_len, head_dim=args.head_dim, dtype=args.dtype, block=block,
                           tensors=tensors, family=args.family, baseline=args.baseline,
                           input_heads=_input_heads(args.input_heads))
            results.append((key, value, est))
    if args.json:
        print(dump_json([dict(e.summary(), sweep={k: v} if k else {}) for k, v, e in results]))
        return 0
    first = results[0][2].shape
    print(f"{results[0][2].name}: batch={first['batch']} heads={first['heads']} kv_heads={first['kv_heads']} "
          f"q_len={first['q_len']} kv_len={first['kv_len']} head_dim={first['head_dim']} {first['dtype']}")
    head = f"| {key} " if key else ""
    print(head + "| hardware | family | block | time | TFLOP/s (useful / executed) | speedup vs dense | speedup vs "
          "baseline | bound: same tiles, ideal | bound: kept pairs only | matmul / exp / mem / mask / overhead / "
          "imbalance |")
    print(("|---" if key else "") + "|---|---|---|---|---|---|---|---|---|---|")
    for k, v, e in results:
        parts = " / ".join(f"{100 * e.breakdown[p] / e.time_s:.0f}%" for p in
                           ("matmul", "exp", "memory", "mask", "overhead", "imbalance"))
        t = f"{e.time_s * 1e3:.3f} ms" if e.time_s < 1 else f"{e.time_s:.2f} s"
        print((f"| {v} " if k else "") + f"| {e.hardware} | {e.family} | {e.block[0]}x{e.block[1]} | {t} | "
              f"{e.tflops:.0f} / {e.executed_tflops:.0f} | {e.speedup:.2f}x | {e.speedup_vs_baseline:.2f}x ({e.baseline}) | "
              f"{e.bound:.2f}x | {e.flop_bound:.2f}x | "
              f"{parts} |")
    return 0


DEFAULT_REPORT = "document"


def cmd_report(args) -> int:
    from .report import report
    from .simulator.hardware import gpu
    from .variants.loader import load_variant

    loaded = load_variant(args.variant, _params(args.param))
    q_len, kv_len = _lengths(loaded, args)
    if loaded.variant is None or not loaded.variant.length:
        q_len = args.q_len or 32768
        kv_len = args.kv_len or q_len
    given = _tensor_files(args.tensor)
    tensors = example_tensors(loaded, q_len, kv_len, batch=args.batch, heads=args.heads, given=given)
    fixed = loaded.variant is not None and loaded.variant.length is not None

    def tensors_for(length: int) -> dict:
        if fixed:
            return tensors
        return example_tensors(loaded, length, length, batch=2, heads=2, given=given)
    check = min(q_len, 2048) if fixed else args.check_size  # None: the report chooses it from the layout
    for hw in args.hardware.split(","):  # a misspelled GPU is an error before any work starts
        gpu(hw)
    if not args.quiet:
        print(f"attncomp report: {loaded.program.name} (use --help for options)", file=sys.stderr)
    rep = report(loaded.program, q_len=q_len, kv_len=kv_len, batch=args.batch, heads=args.heads,
                 head_dim=args.head_dim, dtype=args.dtype, hardware=tuple(args.hardware.split(",")), tensors=tensors,
                 tensors_for=tensors_for, check_size=check, progress=not args.quiet)
    print(rep.summary())
    print()
    print(rep.layout.show())
    if args.out:
        path = rep.write(args.out)
        print(f"\nreport written to {path}")
    return 0 if all(c.ok or c.source is None for c in rep.checks) else 1


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error on one line (and exit status 2, as argparse's)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from .backends.registry import generated
    from .simulator.hardware import known

    backends = [b.name for b in generated()]
    gpus = ",".join(known())
    parser = Parser(prog="attncomp", description="Declarative attention compiler and simulator.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the built-in variants").set_defaults(func=cmd_list)
    show = sub.add_parser("show", help="print a variant's Program and a picture of its mask")
    show.add_argument("variant", help="built-in name or path/to/file.py[:name]")
    show.add_argument("--q-len", type=parse_size)
    show.add_argument("--kv-len", type=parse_size)
    show.add_argument("--param", action="append", metavar="K=V", help="variant argument (repeatable)")
    show.add_argument("--tensor", action="append", metavar="NAME=FILE",
                    help="a runtime tensor from FILE.pt (torch.save) or FILE.npy (numpy.save) (repeatable)")
    show.add_argument("--head", type=index, default=0, help="head to draw (masks may differ per head)")
    show.add_argument("--batch-index", type=index, default=0, help="batch element to draw")
    show.set_defaults(func=cmd_show)
    an = sub.add_parser("analyze", help="classify every tile as empty/partial/full, exactly")
    an.add_argument("variant", help="built-in name or path/to/file.py[:name]")
    an.add_argument("--q-len", type=parse_size, help="query length (default 4096; grids: their token count)")
    an.add_argument("--kv-len", type=parse_size)
    an.add_argument("--block", type=_blocks, default=(128, 128), help="BLOCK_M,BLOCK_N (default 128,128)")
    an.add_argument("--batch", type=positive, default=1)
    an.add_argument("--heads", type=positive, default=1)
    an.add_argument("--head", type=index, default=0, help="head to draw")
    an.add_argument("--param", action="append", metavar="K=V", help="variant argument (repeatable)")
    an.add_argument("--tensor", action="append", metavar="NAME=FILE",
                    help="a runtime tensor from FILE.pt (torch.save) or FILE.npy (numpy.save) (repeatable)")
    an.add_argument("--json", action="store_true", help="print the summary as JSON")
    an.add_argument("--png", metavar="FILE", help="also write the tile picture as a PNG")
    an.set_defaults(func=cmd_analyze)
    co = sub.add_parser("compile", help="write the generated kernel source (Triton or FlexAttention)")
    co.add_argument("variant", help="built-in name or path/to/file.py[:name]")
    co.add_argument("--backend", choices=backends, default=backends[0])
    co.add_argument("-o", "--output", metavar="FILE", help="write here (default: print)")
    co.add_argument("--block", type=_blocks, help="BLOCK_M,BLOCK_N tile (default 64,64 for triton, 128 for flex)")
    co.add_argument("--param", action="append", metavar="K=V", help="variant argument (repeatable)")
    co.set_defaults(func=cmd_compile)
    si = sub.add_parser("simulate", help="predict time and speedup on GPU models")
    si.add_argument("variant", help="built-in name or path/to/file.py[:name]")
    si.add_argument("--hardware", default="h100,b200", help=f"comma-separated: {gpus}")
    si.add_argument("--q-len", type=parse_size, help="query length (default 4096; grids: their token count)")
    si.add_argument("--kv-len", type=parse_size)
    si.add_argument("--batch", type=positive, default=1)
    si.add_argument("--heads", type=positive, default=16)
    si.add_argument("--kv-heads", type=positive)
    si.add_argument("--input-heads", action="append", metavar="NAME=HEADS",
                    help="heads of one key-side input of a cascade (repeatable; default --kv-heads)")
    si.add_argument("--head-dim", type=positive, default=128)
    si.add_argument("--dtype", default="bf16", choices=("bf16", "fp16", "fp8"))
    si.add_argument("--block", type=_blocks, help="tile (default: the kernel family's)")
    si.add_argument("--family", help="kernel family (default: the best on each GPU: fa3, fa4, fa2)")
    si.add_argument("--baseline", help="kernel family of the dense attention to compare with (default: the best "
                                       "on each GPU)")
    si.add_argument("--sweep", metavar="NAME=V1,V2", help="vary block or a variant argument")
    si.add_argument("--param", action="append", metavar="K=V", help="variant argument (repeatable)")
    si.add_argument("--tensor", action="append", metavar="NAME=FILE",
                    help="a runtime tensor from FILE.pt (torch.save) or FILE.npy (numpy.save) (repeatable)")
    si.add_argument("--json", action="store_true")
    si.set_defaults(func=cmd_simulate)
    rp = sub.add_parser("report", help="analysis, simulated speedups, kernels and a numerics check in one report")
    rp.add_argument("variant", nargs="?", default=DEFAULT_REPORT,
                    help=f"built-in name or path/to/file.py[:name] (default: {DEFAULT_REPORT})")
    rp.add_argument("--q-len", type=parse_size, help="query length (default 32k; grids: their token count)")
    rp.add_argument("--kv-len", type=parse_size)
    rp.add_argument("--batch", type=positive, default=1)
    rp.add_argument("--heads", type=positive, default=16)
    rp.add_argument("--head-dim", type=positive, default=128)
    rp.add_argument("--dtype", default="bf16", choices=("bf16", "fp16", "fp8"))
    rp.add_argument("--hardware", default="h100,b200", help=f"comma-separated: {gpus}")
    rp.add_argument("--param", action="append", metavar="K=V", help="variant argument (repeatable)")
    rp.add_argument("--tensor", action="append", metavar="NAME=FILE",
                    help="a runtime tensor from FILE.pt (torch.save) or FILE.npy (numpy.save) (repeatable)")
    rp.add_argument("--check-size", type=parse_size, help="tokens of the numerics check (default: the smallest "
                    "length that shows every tile class of the variant, up to 4k)")
    rp.add_argument("--out", metavar="DIR", help="also write DIR/report.html")
    rp.add_argument("--quiet", action="store_true", help="no progress lines")
    rp.set_defaults(func=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    import signal

    if hasattr(signal, "SIGPIPE") and argv is None:
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `attncomp ... | head` ends quietly
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except AttncompError as err:
        print(f"attncomp: error: {one_line(err)}", file=sys.stderr)
        return 2
    except OSError as err:  # a file the user named: -o, --out, --png
        print(f"attncomp: error: {err.strerror or err}: {err.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2


def one_line(err: AttncompError) -> str:
    """The error as one line: what went wrong, the hint, and where in the user's own files
    (not the ``attncomp`` launcher, which is where a boundary sees the call come from)."""
    text = " ".join(err.summary.split())
    if err.hint:
        text += f" (hint: {' '.join(err.hint.split())})"
    where = err.location
    launcher = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if where is not None and os.path.abspath(where.filename) != launcher and not where.filename.startswith("<"):
        text += f" [at {where.filename}:{where.lineno}]"
    return text


if __name__ == "__main__":
    sys.exit(main())
