"""Fit the simulator's efficiency factors on published dense measurements, and report its
accuracy on every published row (dense and sparse).

    python -m attncomp.simulator.calibrate          # fit, write data/efficiency.json, print the table
    python -m attncomp.simulator.calibrate --report # only the accuracy table

One factor per (hardware, kernel family, dtype class, head-dim class), fitted on the dense
rows (ids starting with A) by minimizing squared log error; sparse rows are never fitted.
One more number is shared by every GPU: how long a run holds the boost clock before power
management settles at the base clock (``power_window_s``, see ``Hardware.run_seconds``),
chosen from a log grid by the same loss with the factors refitted at each point.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
from dataclasses import dataclass

from .hardware import gpu
from .model import EFFICIENCY_FILE, FAMILIES, POWER_WINDOW, dtype_class, head_dim_class
from .simulate import simulate

DATA = os.path.join(os.path.dirname(__file__), "data", "calibration.csv")


@dataclass
class Row:
    id: str
    gpu: str
    kernel: str
    dtype: str
    batch: int
    heads: int
    q_len: int
    kv_len: int
    head_dim: int
    mask: str
    mask_params: str
    time_us: float | None
    tflops: float | None
    provenance: str
    source: str

    @property
    def flops(self) -> float:
        """The FLOPs convention of the data: 4 B H Sq Skv D, halved for causal."""
        f = 4.0 * self.batch * self.heads * self.q_len * self.kv_len * self.head_dim
        return f / 2 if self.mask == "causal" else f

    @property
    def measured_tflops(self) -> float:
        return self.tflops if self.tflops else self.flops / (self.time_us * 1e-6) / 1e12

    @property
    def group(self) -> str:
        return f"{gpu(self.gpu).name}|{self.kernel}|{dtype_class(self.dtype)}|{head_dim_class(self.head_dim)}"

    @property
    def params(self) -> dict:
        """``mask_params`` as a dict (``window=2048,stride=1``, ``kv_heads=8``)."""
        return {k: int(v) for k, v in (kv.split("=") for kv in self.mask_params.split(",") if kv)}

    @property
    def kv_heads(self) -> int:
        return self.params.get("kv_heads", self.heads)

    def spec(self):
        from .. import variants

        if self.mask == "none":
            from ..ir import attention
            return attention(name="dense")
        if self.mask == "causal":
            return variants.causal()
        if self.mask == "neighborhood_1d":
            args = self.params
            return variants.neighborhood((self.q_len,), args["window"], stride=args.get("stride", 1))
        raise ValueError(self.mask)


def rows() -> list[Row]:
    with open(DATA, newline="") as fh:
        out = []
        for r in csv.DictReader(fh):
            num = lambda k: float(r[k]) if r[k] else None
            out.append(Row(r["id"], r["gpu"], r["kernel"], r["dtype"], int(r["batch"]), int(r["heads"]),
                           int(r["q_len"]), int(r["kv_len"]), int(r["head_dim"]), r["mask"], r["mask_params"],
                           num("time_us"), num("tflops"), r["provenance"], r["source"]))
        return out


_LAYOUTS: dict = {}


def predict(row: Row, table: dict):
    """The Estimate for a published row (layouts are cached across calls)."""
    spec = row.spec()
    family = FAMILIES[row.kernel]
    block = family.block(row.head_dim)
    key = (row.mask, row.mask_params.replace(f"kv_heads={row.kv_heads}", ""), row.q_len, row.kv_len, block)
    if key not in _LAYOUTS:
        from ..ir.analysis import analyze
        _LAYOUTS[key] = analyze(spec, row.q_len, row.kv_len, block)
    return simulate(spec, row.gpu, batch=row.batch, heads=row.heads, kv_heads=row.kv_heads, q_len=row.q_len, kv_len=row.kv_len,
                    head_dim=row.head_dim, dtype=row.dtype, family=row.kernel, layout=_LAYOUTS[key],
                    efficiency_table=table)


POWER_WINDOWS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1)  # seconds: the grid of boost windows tried


def loss(members: list[Row], table: dict) -> float:
    """Squared log error of the predicted throughput of ``members``."""
    return sum((math.log(r.flops / predict(r, table).time_s / 1e12) - math.log(r.measured_tflops)) ** 2
               for r in members)


def fit(all_rows: list[Row]) -> dict:
    """The boost window from :data:`POWER_WINDOWS` and, at each, the factors of :func:`fit_factors`,
    with the least squared log error over the dense rows."""
    dense = [r for r in all_rows if r.id.startswith("A")]
    best = min((fit_factors(all_rows, {POWER_WINDOW: w}) for w in POWER_WINDOWS), key=lambda t: loss(dense, t))
    return best


def fit_factors(all_rows: list[Row], fixed: dict | None = None) -> dict:
    """Golden-section search per group on log efficiency, minimizing squared log error
    (``fixed``: entries kept as given, the boost window)."""
    groups: dict[str, list[Row]] = {}
    for r in all_rows:
        if r.id.startswith("A"):
            groups.setdefault(r.group, []).append(r)
    table = dict(fixed or {})
    for key, members in groups.items():
        def group_loss(log_eff: float) -> float:
            return loss(members, dict(table, **{key: math.exp(log_eff)}))
        lo, hi = math.log(0.05), math.log(1.5)
        g = (math.sqrt(5) - 1) / 2
        a, b = hi - g * (hi - lo), lo + g * (hi - lo)
        fa, fb = group_loss(a), group_loss(b)
        for _ in range(40):
            if fa < fb:
                hi, b, fb = b, a, fa
                a = hi - g * (hi - lo)
                fa = group_loss(a)
            else:
                lo, a, fa = a, b, fb
                b = lo + g * (hi - lo)
                fb = group_loss(b)
        table[key] = round(math.exp((lo + hi) / 2), 4)
    return table


def report(all_rows: list[Row], table: dict) -> list[dict]:
    """Predicted vs measured for every row: throughput for dense rows, speedup over the
    same GPU's dense cuDNN row for sparse ones."""
    out = []
    by_id = {r.id: r for r in all_rows}
    dense_ref = {"h100-sxm5": "A11", "b200": "A12"}
    for r in all_rows:
        est = predict(r, table)
        pred = r.flops / est.time_s / 1e12
        entry = {"id": r.id, "gpu": r.gpu, "kernel": r.kernel, "mask": r.mask + (f" ({r.mask_params})" if r.mask_params else ""),
                 "provenance": r.provenance, "measured_tflops": r.measured_tflops, "predicted_tflops": pred,
                 "error": pred / r.measured_tflops - 1, "efficiency_source": est.efficiency_source}
        if r.id.startswith("B"):
            ref = by_id[dense_ref[r.gpu]]
            measured = ref.time_us / r.time_us
            entry.update(measured_speedup=measured, predicted_speedup=est.speedup,
                         speedup_error=est.speedup / measured - 1)
        out.append(entry)
    return out


def print_report(entries: list[dict]) -> None:
    print("| row | GPU | kernel | mask | source | measured TFLOP/s | predicted | error | measured speedup | "
          "predicted speedup | error |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for e in entries:
        speed = (f"{e['measured_speedup']:.2f}x | {e['predicted_speedup']:.2f}x | {100 * e['speedup_error']:+.1f}%"
                 if "measured_speedup" in e else "- | - | -")
        print(f"| {e['id']} | {e['gpu']} | {e['kernel']} | {e['mask']} | {e['provenance']} | "
              f"{e['measured_tflops']:.0f} | {e['predicted_tflops']:.0f} | {100 * e['error']:+.1f}% | {speed} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--report", action="store_true", help="only print the accuracy table")
    args = parser.parse_args()
    all_rows = rows()
    if args.report:
        from .model import load_efficiencies
        table = load_efficiencies()
    else:
        table = fit(all_rows)
        with open(EFFICIENCY_FILE, "w") as fh:
            factors = {k: v for k, v in table.items() if k != POWER_WINDOW}
            json.dump({"fitted_on": "dense rows (A*) of data/calibration.csv", "factors": factors,
                       POWER_WINDOW: table[POWER_WINDOW]}, fh, indent=1)
            fh.write("\n")
        print(f"wrote {EFFICIENCY_FILE}: {table}")
    print_report(report(all_rows, table))


if __name__ == "__main__":
    main()
