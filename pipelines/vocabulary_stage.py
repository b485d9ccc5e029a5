"""The window vocabulary of a compress job, built once on one worker, for side inputs.

With `--coder vocabulary` (b=16), M1 walks its tree of windows once per job
(`compressor.window_vocab`) on the worker that runs this stage; `Compress` and
`Finalize` take its output as a side input, so no other worker loads M1.
"""
import logging

import apache_beam as beam

from pipelines import m1_loader


class BuildVocabularyFn(beam.DoFn):
  """None -> {"bytes": the window vocabulary file, "built_on": where M1 ran}.

  Runs once per job, on a worker: M1 walks the tree of windows on that
  worker's accelerator where it has one (the exact M1's tables are the same
  integers there), or the file of `vocab_path` is read (the launcher checked
  that it is --m1's, so no worker loads M1 for it).
  """

  def __init__(self, method_spec: str, m1_spec: str, vocab_path: str | None):
    super().__init__()
    self._method_spec = method_spec
    self._m1_spec = m1_spec
    self._vocab_path = vocab_path

  def process(self, _):
    if self._vocab_path:
      vocab, device = m1_loader.read_vocabulary(self._vocab_path), None
    else:
      vocab = m1_loader.build_vocabulary(self._method_spec, self._m1_spec)
      device = m1_loader.model_device(m1_loader.shared_method(self._method_spec, self._m1_spec))
    logging.info("window vocabulary %s of M1 %s: %d distinct strings (built on %s)",
                 vocab.digest, vocab.m1_fingerprint, vocab.distinct_strings(),
                 device or self._vocab_path)
    yield {"bytes": vocab.to_bytes(), "built_on": device, "file": self._vocab_path}


class BuildVocabulary(beam.PTransform):
  """Pipeline root -> one window vocabulary (`BuildVocabularyFn`), for side inputs."""

  def __init__(self, method_spec: str, m1_spec: str, vocab_path: str | None = None):
    super().__init__()
    self._args = (method_spec, m1_spec, vocab_path)

  def expand(self, root):
    return (root
            | "VocabularyImpulse" >> beam.Create([None])
            | "BuildVocabulary" >> beam.ParDo(BuildVocabularyFn(*self._args)))
