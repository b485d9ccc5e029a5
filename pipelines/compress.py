"""`eqinfo compress`: corpus -> documents -> examples -> method -> ArrayRecord shards.

The graph (every step labelled):

  ReadShardInputs (per input file, as it is read: screen documents, groups of 128
    documents, shard inputs of --groups_per_shard groups; [SpreadShards on Dataflow])
  -> CodeShards (examples of 10,240 symbols, packing into <= 512 tokens, verification,
    one shard at a time) -> WriteShard (ArrayRecord, group_size:1, written by the
    worker that coded it) -> Accounting -> Finalize
    (errors/errors.jsonl, config.json, stats.json, window_vocab.json, then COMPLETED)

No step holds the corpus: a worker holds the shard it codes, so memory is set by
--groups_per_shard, --batch_size and M1, not by the input's size.

With equal_info_ac[b=16,...] (`--coder auto`, the default, or `vocabulary`),
BuildVocabulary first walks M1's tree of windows once, on one worker (its
accelerator if it has one); Compress and Verify take the vocabulary as a side
input and code by longest match and decode by lookup, with no M1 on the
workers. The tokens are the arithmetic coder's (`--coder arithmetic`), bit for bit.

Locally (DirectRunner):

  eqinfo compress --input 'data/c4/en/c4-validation.*.json.gz' \\
      --method 'equal_info_ac[b=16,v=65k]' --m1 'context[order=3,fit=builtin:pydoc]' \\
      --output /tmp/eqinfo-shards \\
      --direct_num_workers=2 --direct_running_mode=multi_processing

On Dataflow with GPU workers (the worker image is deploy/dataflow/Dockerfile; see
deploy/dataflow/submit.sh):

  eqinfo compress \\
      --input 'gs://BUCKET/c4/en/3.1.0/c4-train.*.json.gz' \\
      --method 'equal_info_ac[b=16,v=65k]' --m1 gs://BUCKET/m1/3m \\
      --output gs://BUCKET/shards/eqinfo_b16_v65k/train --split train \\
      --packing continue --max_tokens 512 --batch_size 256 \\
      --runner DataflowRunner --project PROJECT --region us-central1 \\
      --temp_location gs://BUCKET/tmp --staging_location gs://BUCKET/staging \\
      --job_name eqinfo-compress-b16-v65k \\
      --sdk_location container \\
      --sdk_container_image REGION-docker.pkg.dev/PROJECT/eqinfo/worker@sha256:DIGEST \\
      --experiments use_runner_v2 --experiments no_use_multiple_sdk_containers \\
      --machine_type g2-standard-8 --disk_size_gb 100 \\
      --dataflow_service_options \\
        'worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver' \\
      --number_of_worker_harness_threads 1 --max_num_workers 64
"""
import dataclasses
import glob
import os
import shutil
import sys
import uuid

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions, TestOptions

from compressor import corpus, window_vocab
from pipelines import accounting as accounting_lib
from pipelines import m1_loader, options, sink, sources, transforms, vocabulary_stage
from training import accelerator
from training import shards

# What a run writes, and the temporary directories of shard writers that were killed.
_OUTPUT_FILES = ("*" + shards.SHARD_SUFFIX, shards.STATS, shards.CONFIG, shards.COMPLETED,
                 shards.JOB, window_vocab.FILENAME, f"{shards.ERRORS_DIR}/*")


def _matches(pattern: str) -> list[str]:
  try:
    return [m.path for m in FileSystems.match([pattern])[0].metadata_list]
  except Exception:  # pylint: disable=broad-except  (Beam raises on a missing directory)
    return []


def prepare_output(output: str, overwrite: bool) -> str:
  """Checks the output directory, clears what an earlier run wrote there, and claims it for
  this job: returns the job token written to its `.eqinfo-job` (the shard writers and the
  final step check it, so that a job whose directory another took over stops).

  Raises:
    FileExistsError: if it holds files and `overwrite` is False.
  """
  existing = _matches(shards.join(output, "*"))
  if existing and not overwrite:
    raise FileExistsError(f"--output {output} already exists and is not empty; pass --overwrite "
                          f"to replace its shards, or choose another --output")
  old = [p for pattern in _OUTPUT_FILES for p in _matches(shards.join(output, pattern))]
  if old:
    FileSystems.delete(old)
  if "://" not in output:
    # Temp directories of shard writers that were killed mid-write: Beam's match does not
    # list them (their names start with a dot), so they go here.
    for temp in glob.glob(os.path.join(glob.escape(output), sink.TEMP_PREFIX + "*")):
      shutil.rmtree(temp, ignore_errors=True)
    os.makedirs(output, exist_ok=True)
  job = uuid.uuid4().hex
  sink.write_bytes(shards.join(output, shards.JOB), job.encode())
  return job


def run_info(config: options.CompressConfig, method) -> dict:
  """What stats.json records about the method and the run, besides the totals."""
  return {
      "method": method.spec,
      "m1": m1_loader.portable_spec(config.m1) if m1_loader.needs_model(config.method) else None,
      "m1_fingerprint": m1_loader.fingerprint(method),
      "m1_inference": m1_loader.inference(method),
      "m1_flops_per_byte": m1_loader.flops_per_byte(method),
      "vocab_size": int(method.vocab_size),
      "token_bits": getattr(method, "token_bits", None),
      "window_bits": getattr(method, "window_bits", None),
      "uses_model": bool(getattr(method, "uses_model", False)),
      "coder": config.coder,
      "input": config.input,
      "split": config.split,
      "packing": config.packing,
      "max_tokens": config.max_tokens,
      "docs_per_group": config.docs_per_group,
      "example_symbols": config.example_symbols,
      "verify": config.verify,
      "verify_fraction": config.verify_fraction if config.verify else 0.0,
      "verify_device": (None if not config.verify else
                        "vocabulary" if config.coder == "vocabulary" else config.verify_device),
      "groups_per_shard": config.groups_per_shard,
  }


def spread(config: options.CompressConfig, beam_args: list[str]) -> bool:
  """Whether shard inputs are shuffled after reading (`--spread_shards`; auto: on Dataflow)."""
  if config.spread_shards == "auto":
    return not local_runner(beam_args)
  return config.spread_shards == "on"


def build_pipeline(p: beam.Pipeline, config: options.CompressConfig, spec: corpus.InputSpec,
                   info: dict, job: str | None = None, spread_shards: bool = False):
  """Adds the compression graph to `p`; returns the stats PCollection (one dict)."""
  read = p | "ReadShardInputs" >> sources.ReadShardInputs(
      spec, config.docs_per_group, config.groups_per_shard, config.text_field,
      config.max_docs_per_file, config.max_doc_bytes, config.tfds_data_dir, spread_shards)
  vocab = (p | "Vocabulary" >> vocabulary_stage.BuildVocabulary(config.method, config.m1,
                                                                 config.vocab)
           if config.coder == "vocabulary" else None)
  coded = read["shards"] | "CodeShards" >> transforms.CodeShards(
      config.method, config.m1, config.max_tokens, config.packing, config.example_symbols,
      config.batch_size, config.verify, config.verify_fraction, config.verify_device, vocab,
      config.accelerator)
  summaries = coded["shards"] | "WriteShard" >> beam.ParDo(sink.WriteShardFn(
      config.output, config.split, info["method"], info["vocab_size"], job))
  errors = (read["errors"], coded["errors"]) | "AllErrors" >> beam.Flatten()
  accounting = (summaries, errors) | "Accounting" >> accounting_lib.Accounting(info["vocab_size"])
  return ((accounting, errors, *([vocab] if vocab is not None else []))
          | "Finalize" >> sink.Finalize(config.output, info, config.to_json(), job))


def summary(stats: dict) -> str:
  """A few lines of totals from stats.json."""
  dropped = ", ".join(f"{r}: {e['inputs']} ({e['bytes']} B)"
                      for r, e in stats["dropped"].items()) or "none"
  return "\n".join([
      f"method {stats['method']}  m1 {stats['m1'] or '-'}"
      f"{'  coder ' + stats['coder'] if stats.get('coder') else ''}"
      f"{'  on ' + ', '.join(stats['m1_devices']) if stats.get('m1_devices') else ''}"
      f"  packing {stats['packing']}",
      f"examples {stats['examples']}  tokens {stats['tokens']}  bytes {stats['bytes']}  "
      f"windows {stats['windows']} (literal {stats['literal_windows']})",
      shards.ratio_line(stats),
      f"bytes in {stats['bytes_in']} = in records {stats['bytes']} + dropped "
      f"{stats['bytes_dropped']}  [{dropped}]",
      f"verification failures {stats['verification_failures']}"
      + (f" ({stats['records_verified']} of {stats['examples']} records decoded"
         f"{shards.verified_where(stats)})"
         if stats["verify"] else " (verification off)"),
  ])


def make_pipeline(config: options.CompressConfig, beam_args: list[str],
                  prepare: bool = True) -> beam.Pipeline:
  """Checks the flags, the method, the input and the output, and builds the pipeline (not run).

  `prepare` False leaves the output directory as it is (a dry run).

  Raises:
    ValueError: on a bad method spec or a model-based method without --m1.
    FileNotFoundError: on a missing input or M1.
    FileExistsError: on a non-empty output directory without --overwrite.
  """
  if local_runner(beam_args):  # the workers are this machine: check it before any work
    accelerator.require(config.accelerator)
  method = m1_loader.build_method(config.method, config.m1)
  config = dataclasses.replace(config, coder=m1_loader.resolve_coder(config.method, config.coder))
  if config.vocab and config.coder != "vocabulary":
    raise ValueError(f"--vocab codes equal_info_ac[b=16,...] with --coder vocabulary, not "
                     f"{config.method} with --coder {config.coder}; leave out --vocab")
  if config.vocab:
    m1_loader.build_vocabulary(config.method, config.m1, config.vocab)  # the right M1's, readable
  try:
    spec = corpus.resolve(config.input, config.tfds_split or config.split, config.tfds_data_dir,
                          config.tfds_chunk_docs)
  except FileNotFoundError as e:
    raise FileNotFoundError(f"--input: {e}") from None
  corpus.check_text_field(spec, config.text_field, config.tfds_data_dir)
  job = prepare_output(config.output, config.overwrite) if prepare else None
  p = beam.Pipeline(options=pipeline_options(beam_args))
  build_pipeline(p, config, spec, run_info(config, method), job, spread(config, beam_args))
  return p


# Beam's DirectRunner would first download the Prism runner (a Go binary) and run there
# where the network allows, else fall back to the FnApiRunner: one runner everywhere.
DEFAULT_RUNNER = "FnApiRunner"


def pipeline_options(beam_args: list[str]) -> PipelineOptions:
  """Beam's options from the flags eqinfo leaves to Beam, with `DEFAULT_RUNNER` unless
  --runner names one (--direct_num_workers and --direct_running_mode apply to it)."""
  beam_options = PipelineOptions(beam_args)
  standard = beam_options.view_as(StandardOptions)
  standard.runner = standard.runner or DEFAULT_RUNNER
  return beam_options


def local_runner(beam_args: list[str]) -> bool:
  """True unless the job runs on Dataflow (whose workers are other machines)."""
  runner = pipeline_options(beam_args).view_as(StandardOptions).runner
  return "Dataflow" not in str(runner)


def local_dry_run(beam_args: list[str]) -> bool:
  """True for `--dry_run` under a runner that does not implement it (all but Dataflow's,
  which builds and checks the job without submitting it)."""
  return (bool(PipelineOptions(beam_args).view_as(TestOptions).dry_run)
          and local_runner(beam_args))


def graph_summary(p: beam.Pipeline) -> str:
  """The top-level steps of a built pipeline, in the order they were applied."""
  steps = [part.full_label for part in p.transforms_stack[0].parts]
  return f"{len(steps)} steps: " + " -> ".join(steps)


def compress(config: options.CompressConfig, beam_args: list[str]) -> dict | None:
  """Runs the pipeline; returns stats.json's content, or None if the job is still running.

  With `--dry_run` under a local runner, builds the graph, prints its steps and runs
  nothing (the output directory is not touched).
  """
  if local_dry_run(beam_args):
    p = make_pipeline(config, beam_args, prepare=False)
    print(f"--dry_run: built the pipeline and ran nothing; {graph_summary(p)}")
    return None
  make_pipeline(config, beam_args).run().wait_until_finish()
  if not shards.is_completed(config.output):
    return None
  return shards.read_json(shards.join(config.output, shards.STATS))


def run(argv=None) -> int:
  """`eqinfo compress` (see the module docstring). Returns the exit status."""
  config, beam_args = options.parse(sys.argv[1:] if argv is None else argv)
  stats = compress(config, beam_args)
  if stats is None:
    print(f"no {shards.COMPLETED} in {config.output} yet (a dry run, or a job still running)")
  else:
    print(f"wrote {config.output}\n{summary(stats)}")
  return 0
