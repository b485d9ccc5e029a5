"""The paper's five findings, checked against a reproduction's report (`eqinfo reproduce`).

Each claim is measured from report.json's own numbers, with the rule written here,
so that a reader can recompute it:

1. Table 2's ordering of compression ratios (bytes/token of the train shards):
   StaticAC < EqualInfoAC[b=16] < [b=32] < [b=64] < AC, all at v=256.
2. Table 3: AC's and StaticAC's tokens are close to uniform (unigram bits/byte at
   least `NEAR_UNIFORM` of the uniform one), while Bytes' and SentencePiece's are
   far from it (at most `FAR_FROM_UNIFORM`).
3. Fig. 3: the AC and StaticAC M2 do not get clearly below their baselines, while the
   EqualInfoAC[b=16,v=256] M2 does ("clearly": bits/byte under (1 - `CLEARLY`) times
   the lower of its uniform and unigram baselines), at the largest M2 size.
4. Fig. 8: median edit distance SentencePiece < EqualInfoAC[b=16] < AC.
5. EqualInfoAC[b=16,v=256]: M2 predicts a window's first token more accurately than
   its second, at the last validation of the largest M2.

A claim whose methods are not in the grid is "not measured".
"""
from compressor.methods import registry
from pipelines import figures

NEAR_UNIFORM = 0.98
FAR_FROM_UNIFORM = 0.9
CLEARLY = 0.02

TABLE2_ORDER = ("static_ac[v=256]", "equal_info_ac[b=16,v=256]", "equal_info_ac[b=32,v=256]",
                "equal_info_ac[b=64,v=256]", "ac[v=256]")
NEAR_UNIFORM_METHODS = ("ac[v=256]", "static_ac[v=256]")
FAR_FROM_UNIFORM_METHODS = ("bytes", "sentencepiece")
AT_BASELINE_METHODS = ("ac[v=256]", "static_ac[v=256]")
LEARNABLE_METHOD = "equal_info_ac[b=16,v=256]"
FIG8_ORDER = ("sentencepiece", "equal_info_ac[b=16,v=256]", "ac[v=256]")


def method_key(spec: str) -> str:
  """A method as the claims name it: name[b=..,v=..] without a model's path or fit.

  >>> method_key("sentencepiece[path=/runs/sp.model]"), method_key("equal_info_ac[v=256,b=16]")
  ('sentencepiece', 'equal_info_ac[b=16,v=256]')
  """
  name, args = registry.parse_spec(spec)
  kept = [f"{k}={args[k]}" for k in ("b", "v") if k in args]
  return f"{name}[{','.join(kept)}]" if kept else name


def _train_rows(result: dict) -> dict[str, dict]:
  """{method key: compression row} of the train shards (directories ending in /train)."""
  return {method_key(row["method"]): row for row in result["compression"]
          if row["directory"].rstrip("/").endswith("train")}


def ordering(values: list[float], fmt: str = "{:.2f}") -> str:
  """The values in order, each pair joined by how they compare, e.g. "2 = 2 < 52".

  >>> ordering([1.0, 2.5, 2.5, 0.5], "{:g}")
  '1 < 2.5 = 2.5 > 0.5'
  """
  out = fmt.format(values[0])
  for a, b in zip(values, values[1:]):
    out += f" {'<' if a < b else '=' if a == b else '>'} {fmt.format(b)}"
  return out


def _verdict(held: bool | None) -> str:
  return {True: "held", False: "did not hold", None: "not measured"}[held]


def table2_ordering(result: dict) -> dict:
  rows = _train_rows(result)
  if not all(m in rows for m in TABLE2_ORDER):
    return {"held": None, "here": "-"}
  ratios = [rows[m]["compression_ratio"] for m in TABLE2_ORDER]
  return {"held": all(a < b for a, b in zip(ratios, ratios[1:])),
          "here": ordering(ratios), "ratios": dict(zip(TABLE2_ORDER, ratios))}


def table3_uniformity(result: dict) -> dict:
  rows = _train_rows(result)
  wanted = NEAR_UNIFORM_METHODS + FAR_FROM_UNIFORM_METHODS
  if not all(m in rows and rows[m]["uniform_bits_per_byte"] for m in wanted):
    return {"held": None, "here": "-"}
  share = {m: rows[m]["unigram_bits_per_byte"] / rows[m]["uniform_bits_per_byte"] for m in wanted}
  held = (all(share[m] >= NEAR_UNIFORM for m in NEAR_UNIFORM_METHODS)
          and all(share[m] <= FAR_FROM_UNIFORM for m in FAR_FROM_UNIFORM_METHODS))
  return {"held": held, "unigram_over_uniform": share,
          "here": ", ".join(f"{m} {share[m]:.3f}" for m in wanted)}


def _largest_m2(result: dict) -> dict[str, dict]:
  """{method key: the Fig. 3 point of its largest M2} (`figures.fig3_points`)."""
  return {method_key(m): pts[-1] for m, pts in figures.fig3_points(result).items()}


def fig3_learnability(result: dict) -> dict:
  points = _largest_m2(result)
  if not all(m in points for m in AT_BASELINE_METHODS + (LEARNABLE_METHOD,)):
    return {"held": None, "here": "-"}
  below = {m: p["bits_per_byte"] / min(p["uniform"], p["unigram"]) for m, p in points.items()
           if m in AT_BASELINE_METHODS + (LEARNABLE_METHOD,)}
  held = (all(below[m] >= 1 - CLEARLY for m in AT_BASELINE_METHODS)
          and below[LEARNABLE_METHOD] < 1 - CLEARLY)
  return {"held": held, "bits_per_byte_over_best_baseline": below,
          "here": ", ".join(f"{m} {below[m]:.3f}" for m in below)}


def fig8_stability(result: dict) -> dict:
  """From the medians of the Fig. 8 figure (`figures.draw_fig8`)."""
  drawn = [f["data"]["medians"] for f in result.get("figures", [])
           if f["name"] == "fig8_stability"]
  found = {method_key(m): median for m, median in (drawn[0] if drawn else {}).items()}
  if not all(m in found for m in FIG8_ORDER):
    return {"held": None, "here": "-"}
  medians = [found[m] for m in FIG8_ORDER]
  return {"held": all(a < b for a, b in zip(medians, medians[1:])),
          "here": ordering(medians, "{:g}"), "medians": dict(zip(FIG8_ORDER, medians))}


def window_position_accuracy(result: dict) -> dict:
  runs = {row["directory"]: row for row in result["training"] if row["kind"] == "m2"}
  curves = figures.window_accuracy_points(result)
  largest = _largest_m2(result).get(LEARNABLE_METHOD)
  run = next((d for d, row in runs.items() if method_key(row["method"]) == LEARNABLE_METHOD
              and largest and row["size"] == largest["size"] and d in curves), None)
  if run is None:
    return {"held": None, "here": "-"}
  last = curves[run][-1]
  first, second = last["accuracy_by_window_position"][:2]
  return {"held": first > second, "step": last["step"], "first": first, "second": second,
          "here": f"first {first:.3f}, second {second:.3f} at step {last['step']}"}


CLAIMS = (  # (name, what the paper found, the measure)
    ("Table 2: compression ratio ordering",
     "StaticAC < EqualInfoAC b=16 < b=32 < b=64 < AC: 1.73 < 2.66 < 3.49 < 4.16 < 5.49 "
     "bytes/token", table2_ordering),
    ("Table 3: AC and StaticAC tokens near uniform, Bytes and SentencePiece far from it",
     f"unigram/uniform bits/byte: >= {NEAR_UNIFORM} for AC, StaticAC; <= {FAR_FROM_UNIFORM} "
     "for Bytes, SentencePiece", table3_uniformity),
    ("Fig. 3: AC and StaticAC M2 stay at their baseline; EqualInfoAC[b=16] M2 below both",
     f"M2 bits/byte over the lower baseline: >= {1 - CLEARLY} for AC, StaticAC; "
     f"< {1 - CLEARLY} for EqualInfoAC[b=16,v=256]", fig3_learnability),
    ("Fig. 8: median edit distance SentencePiece < EqualInfoAC[b=16] < AC",
     "SentencePiece < EqualInfoAC[b=16] < AC", fig8_stability),
    ("Window-initial tokens are predicted more accurately than window-final ones",
     "EqualInfoAC[b=16,v=256]: accuracy of token 1 > token 2 of the window",
     window_position_accuracy),
)


def check(result: dict) -> list[dict]:
  """Every claim: [{"claim", "paper", "here", "held", "verdict", ...its numbers}]."""
  rows = []
  for claim, found, measure in CLAIMS:
    measured = measure(result)
    rows.append({"claim": claim, "paper": found, **measured,
                 "verdict": _verdict(measured["held"])})
  return rows


def markdown(rows: list[dict]) -> str:
  """The claims as a Markdown table: claim, the paper, here, verdict."""
  lines = ["| claim | paper | here | verdict |", "|---|---|---|---|"]
  lines += [f"| {r['claim']} | {r['paper']} | {r['here']} | {r['verdict']} |" for r in rows]
  return "\n".join(lines)
