"""The `eqinfo` command: the Beam pipeline that turns corpora into M2-ready ArrayRecord shards,
and the commands that inspect, report on and generate from them.

  cli.py               the `eqinfo` console script: one subcommand per job
  compress.py          `eqinfo compress`: the pipeline and its run
  options.py           compress's typed flags; Beam's own pass through
  sources.py           reading a corpus inside Beam: each file's groups and shard inputs,
                       formed as it is read (compressor/corpus.py reads the documents)
  transforms.py        a shard input -> examples -> coded, verified records
  accounting.py        totals, histogram, drops by reason; bytes in = in records + dropped
  vocabulary_stage.py  the window vocabulary of a job, built once, as a side input
  sink.py              writes each shard where it was coded, then the directory's
                       metadata (format: training/shards.py)
  m1_loader.py         the `--m1` flag: which probability model, loaded once per process
  device_check.py      the accelerator's M1 tables against the CPU's, before coding
  demo.py              `eqinfo demo`: the pipeline on builtin:pydoc
  build_vocab.py       `eqinfo build-vocab`
  inspect_shards.py    `eqinfo inspect`; vocab_view.py its `--vocab` view
  report.py            `eqinfo report`, beside the paper's figures (paper.py)
  reproduce.py         `eqinfo reproduce`: the paper's grid end to end (scales/*.toml)
  figures.py           Fig. 3, learning curves, Fig. 8 and Table 7 of a report (matplotlib)
  claims.py            the paper's five findings, checked against a reproduction's report
  stability.py         how methods cut text: edit distances under prefixes, segmentation
  generate.py          `eqinfo generate`: M2 samples decoded through M1
"""
