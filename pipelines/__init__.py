"""Apache Beam pipelines that turn corpora into M2-ready ArrayRecord shards."""
