"""M1 and M2: the transformer, their input, training and evaluation, and M1 as the coders'
probability model (docs/DESIGN.md).

  model.py          the decoder-only transformer shared by M1 and M2
  configs.py        the paper's Table 4 sizes and strict overrides
  m1/               M1 as the coders' probability model: float and integer-exact (see there)
  m1_epoch.py       one epoch of M1 sequences, shuffled, resumable from its position
  m1_input.py       M1's batches from a corpus
  shards.py         the shard directory format: records, names, stats.json, reading it
  m2_records.py     M2's records from ArrayRecord shards through grain, one per row
  row_packing.py    several M2 records per row
  m2_input.py       M2's batches: one record per row or packed
  batch_layout.py   the batch layout both inputs yield (BOS, padding, weights)
  loss.py           cross entropy plus z-loss; chunked_loss.py the same a chunk at a time
  window_accuracy.py  M2's accuracy by position within an Equal-Info window
  optim.py          Adafactor on the rsqrt schedule
  train.py          the data-parallel training loop shared by M1 and M2
  train_flags.py    the flags train-m1 and train-m2 share
  metrics.py        bits/byte, FLOPs/byte, MFU, metrics.jsonl and TensorBoard
  checkpoint.py     checkpoints: params, optimiser state, step, data position
  evaluate.py       `eqinfo eval`: bits/byte with the paper's baselines
  train_m1.py       `eqinfo train-m1`
  train_m2.py       `eqinfo train-m2`
  log_setup.py      logging of the commands
  accelerator.py    `--accelerator gpu|tpu|cpu|auto`, checked before any work
  preemption.py     SIGTERM during training: a checkpoint at the current step, exit 143
"""
