"""The paper's figures from a report (`pipelines/report.py`'s rows), as PNG and SVG.

  fig3_bits_per_byte_vs_flops   Fig. 3: M2's bits/byte against its inference FLOPs/byte,
                                one line per method (one point per M2 size), log x-axis,
                                each method's uniform (dashed) and unigram (dotted)
                                baselines beside it
  learning_curves               validation bits/byte against training step and against
                                bytes of text seen, one line per M2 run
  fig8_stability                Fig. 8: histograms of the edit distance between the tokens
                                of one sentence with and without a one-word prefix, one
                                panel per method (`pipelines/stability.py`)

  window_position_accuracy      M2's validation accuracy on the first, second, ... token of
                                each Equal-Info window over training (runs whose windows
                                hold several tokens, e.g. b=16 with v=256)

`segmentation_markdown` is Table 7: the sentence cut where each method cuts it.

Each figure's plotted numbers are returned with it (and `eqinfo reproduce` keeps them in
report.json), so a test can hold them against the eval files and runs they came from.
"""
import pathlib
import statistics

from pipelines import report

FORMATS = ("png", "svg")


def _pyplot():
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  from matplotlib import pyplot  # pylint: disable=import-outside-toplevel
  return pyplot


def method_label(method: str) -> str:
  """A method's name in a legend: its spec, without a SentencePiece model's path."""
  return "sentencepiece" if method.startswith("sentencepiece[") else method


def fig3_points(result: dict) -> dict[str, list[dict]]:
  """{method: [{"size", "flops_per_byte", "bits_per_byte", "uniform", "unigram", "eval"}]}
  from the evaluation rows, each joined to its training run by checkpoint, in FLOPs order."""
  runs = {row["directory"]: row for row in result["training"]}
  points = {}
  for row in result["evaluation"]:
    run = runs.get(row["checkpoint"])
    if run is None or run["kind"] != "m2":
      continue
    points.setdefault(method_label(run["method"]), []).append({
        "size": run["size"], "flops_per_byte": row["flops_per_byte"],
        "bits_per_byte": row["bits_per_byte"], "uniform": row["uniform_bits_per_byte"],
        "unigram": row["unigram_bits_per_byte"], "eval": row["path"]})
  return {m: sorted(p, key=lambda x: x["flops_per_byte"]) for m, p in points.items()}


def learning_curve_points(result: dict) -> dict[str, list[dict]]:
  """{run: [{"step", "bits_per_byte", "bytes_seen"}]} of every M2 run's validation records.

  Bytes seen at step s: `report.bytes_seen` (as the report's epochs count them).
  """
  curves = {}
  for row in result["training"]:
    if row["kind"] != "m2":
      continue
    records = report.metric_records(row["directory"])
    points = [{"step": r["step"], "bits_per_byte": r["bits_per_byte"],
               "bytes_seen": report.bytes_seen(records, r["step"]) or 0.0}
              for r in records if r["split"] == "validation"]
    curves[row["directory"]] = points
  return curves


def _save(fig, directory: pathlib.Path, name: str) -> dict[str, str]:
  directory.mkdir(parents=True, exist_ok=True)
  paths = {}
  for fmt in FORMATS:
    path = directory / f"{name}.{fmt}"
    fig.savefig(path, bbox_inches="tight")
    paths[fmt] = str(path)
  return paths


def draw_fig3(points: dict[str, list[dict]], directory: pathlib.Path) -> dict:
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(7, 4.5))
  for method, pts in sorted(points.items()):
    xs = [p["flops_per_byte"] for p in pts]
    (line,) = ax.plot(xs, [p["bits_per_byte"] for p in pts], marker="o", label=method)
    span = [min(xs) / 1.3, max(xs) * 1.3]
    ax.plot(span, [pts[-1]["uniform"]] * 2, linestyle="--", color=line.get_color(), lw=0.8)
    ax.plot(span, [pts[-1]["unigram"]] * 2, linestyle=":", color=line.get_color(), lw=0.8)
  ax.set_xscale("log")
  ax.set_xlabel("M2 inference FLOPs/byte")
  ax.set_ylabel("bits/byte (validation)")
  ax.set_title("Fig. 3: bits/byte against FLOPs/byte (dashed: uniform, dotted: unigram)")
  ax.legend(fontsize=7)
  paths = _save(fig, directory, "fig3_bits_per_byte_vs_flops")
  plt.close(fig)
  return {"name": "fig3_bits_per_byte_vs_flops", "files": paths, "data": points}


def draw_learning_curves(curves: dict[str, list[dict]], directory: pathlib.Path) -> dict:
  plt = _pyplot()
  fig, (by_step, by_bytes) = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
  for run, pts in sorted(curves.items()):
    label = pathlib.Path(run).name
    by_step.plot([p["step"] for p in pts], [p["bits_per_byte"] for p in pts], marker=".",
                 label=label)
    by_bytes.plot([p["bytes_seen"] for p in pts], [p["bits_per_byte"] for p in pts],
                  marker=".", label=label)
  by_step.set_xlabel("training step")
  by_bytes.set_xlabel("bytes of text seen")
  by_step.set_ylabel("validation bits/byte")
  by_bytes.legend(fontsize=7)
  fig.suptitle("Learning curves of M2")
  paths = _save(fig, directory, "learning_curves")
  plt.close(fig)
  return {"name": "learning_curves", "files": paths, "data": curves}


def draw_fig8(distances: dict[str, list[int]], directory: pathlib.Path) -> dict:
  plt = _pyplot()
  medians = {m: statistics.median(v) for m, v in distances.items()}
  fig, axes = plt.subplots(1, max(len(distances), 1), figsize=(4 * max(len(distances), 1), 3.2),
                           squeeze=False)
  for ax, (method, values) in zip(axes[0], distances.items()):
    ax.hist(values, bins=20)
    ax.axvline(medians[method], color="black", linestyle="--", lw=0.8)
    ax.set_title(method_label(method), fontsize=9)
    ax.set_xlabel("edit distance (tokens)")
  axes[0][0].set_ylabel("prefixes")
  fig.suptitle("Fig. 8: tokenization stability under one-word prefixes (dashed: median)",
               y=1.04)
  paths = _save(fig, directory, "fig8_stability")
  plt.close(fig)
  return {"name": "fig8_stability", "files": paths,
          "data": {"edit_distances": distances, "medians": medians}}


def segmentation_markdown(study: dict) -> str:
  """Table 7: the study's sentence cut by each method, pieces separated by "|"."""
  lines = [f"Table 7: \"{study['sentence']}\" as each method cuts it", "",
           "| method | pieces | segmentation |", "|---|---|---|"]
  for method, pieces in study["segments"].items():
    cells = "\\|".join(p.replace("|", "\\|") for p in pieces)
    lines.append(f"| {method_label(method)} | {len(pieces)} | `{cells}` |")
  return "\n".join(lines)


def window_accuracy_points(result: dict) -> dict[str, list[dict]]:
  """{run: [{"step", "accuracy_by_window_position"}]} of the M2 runs whose validation
  counted accuracy by window position (`training/window_accuracy.py`)."""
  curves = {}
  for row in result["training"]:
    if row["kind"] != "m2":
      continue
    points = [{"step": r["step"], "accuracy_by_window_position": r["accuracy_by_window_position"]}
              for r in report.metric_records(row["directory"])
              if r["split"] == "validation" and "accuracy_by_window_position" in r]
    if points:
      curves[row["directory"]] = points
  return curves


def draw_window_accuracy(curves: dict[str, list[dict]], directory: pathlib.Path) -> dict:
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(7, 4.2))
  for run, pts in sorted(curves.items()):
    for position in range(len(pts[0]["accuracy_by_window_position"])):
      ax.plot([p["step"] for p in pts], [p["accuracy_by_window_position"][position] for p in pts],
              marker=".", label=f"{pathlib.Path(run).name}: token {position + 1} of the window")
  ax.set_xlabel("training step")
  ax.set_ylabel("validation next-token accuracy")
  ax.set_title("Accuracy by position in the window")
  if curves:
    ax.legend(fontsize=7)
  paths = _save(fig, directory, "window_position_accuracy")
  plt.close(fig)
  return {"name": "window_position_accuracy", "files": paths, "data": curves}


def draw_all(result: dict, directory: pathlib.Path) -> list[dict]:
  """Every figure of a report result into `directory`; [{"name", "files", "data"}]."""
  return [draw_fig3(fig3_points(result), directory),
          draw_learning_curves(learning_curve_points(result), directory),
          draw_fig8(result["tokenization"]["edit_distances"], directory),
          draw_window_accuracy(window_accuracy_points(result), directory)]


def markdown(drawn: list[dict], base: pathlib.Path) -> str:
  """Markdown image links to the PNGs, relative to `base`."""
  return "\n\n".join(f"![{d['name']}]({pathlib.Path(d['files']['png']).relative_to(base)})"
                     for d in drawn)
