"""Model configurations: the paper's Table 4 sizes by name, with a strict override layer.

The same decoder-only transformer serves as M1 (bytes) and M2 (compressed
tokens); only `vocab_size` and `max_len` differ. Sizes are looked up by the
paper's names (`3m`, `25m`, `113m`, `403m`, `2b`) plus two test sizes:

    cfg = model_config("25m", vocab_size=65_536, max_len=512, dtype="bfloat16")
    json.dumps(to_dict(cfg))            # saved next to every checkpoint
    from_dict(json.loads(text)) == cfg

Parameter counts of Table 4 (non-embedding, see `training.model.count_params`)
match the names only with a gated ReLU MLP, `(relu(x W0) * (x W1)) W2`, which is
therefore the default (`mlp_gated=True`). Heads are 64 wide except in "2b",
whose 32 heads are 128 wide: that is what gives it 2.01e9 non-embedding
parameters (head dim 64 would give 1.61e9).
"""
import dataclasses
import typing
from typing import Any, Mapping

DTYPES = ("float32", "bfloat16")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Architecture of the transformer (M1 or M2)."""

  vocab_size: int  # input tokens and output logits (M1: 258 = 257 symbols + BOS)
  d_model: int  # embedding / residual stream width ("Embedding Dim" of Table 4)
  num_heads: int  # attention heads per layer
  head_dim: int  # width of each head's query, key and value
  num_layers: int  # decoder blocks
  mlp_dim: int  # hidden width of the MLP
  max_len: int  # attention window: a position sees at most this many positions, itself included
  rel_pos_buckets: int = 32  # T5 relative-position buckets (unidirectional)
  rel_pos_max_distance: int = 128  # distances at or beyond this share the last bucket
  dtype: str = "float32"  # compute dtype, "float32" or "bfloat16"; params stay float32
  mlp_gated: bool = True  # gated ReLU MLP (3 matrices), as Table 4's counts imply
  norm_eps: float = 1e-6  # RMSNorm epsilon
  remat: bool = False  # rematerialise each decoder block in the backward pass

  def __post_init__(self):
    _check_types(type(self), dataclasses.asdict(self))
    for name in ("vocab_size", "d_model", "num_heads", "head_dim", "num_layers", "mlp_dim",
                 "max_len", "rel_pos_buckets", "rel_pos_max_distance"):
      if getattr(self, name) < 1:
        raise ValueError(f"ModelConfig.{name} must be >= 1, got {getattr(self, name)}")
    if self.rel_pos_buckets < 2:
      raise ValueError(f"ModelConfig.rel_pos_buckets must be >= 2, got {self.rel_pos_buckets}")
    if self.rel_pos_max_distance <= self.rel_pos_buckets // 2:
      raise ValueError(f"ModelConfig.rel_pos_max_distance must exceed rel_pos_buckets // 2 = "
                       f"{self.rel_pos_buckets // 2}, got {self.rel_pos_max_distance}")
    if self.dtype not in DTYPES:
      raise ValueError(f"ModelConfig.dtype must be one of {DTYPES}, got {self.dtype!r}")
    if not self.norm_eps > 0:
      raise ValueError(f"ModelConfig.norm_eps must be > 0, got {self.norm_eps}")

  @property
  def attn_dim(self) -> int:
    """Width of all heads together, num_heads * head_dim."""
    return self.num_heads * self.head_dim


@dataclasses.dataclass(frozen=True)
class Size:
  """One row of the paper's Table 4 (or a test size)."""

  d_model: int  # embedding dim
  num_heads: int  # heads per layer
  num_layers: int  # decoder blocks
  mlp_dim: int  # MLP hidden width
  head_dim: int = 64  # per-head width
  description: str = ""  # where the row comes from


SIZES: dict[str, Size] = {
    "tiny": Size(64, 2, 2, 192, head_dim=32, description="tests: ~0.1M non-embedding params"),
    "mini": Size(128, 4, 4, 512, head_dim=32, description="tests: ~1M non-embedding params"),
    "3m": Size(256, 4, 3, 1024, description="Table 4; the paper's M1"),
    "25m": Size(512, 8, 6, 2048, description="Table 4"),
    "113m": Size(768, 12, 12, 3072, description="Table 4"),
    "403m": Size(1024, 16, 24, 4096, description="Table 4"),
    "2b": Size(2048, 32, 24, 8192, head_dim=128, description="Table 4"),
}


def model_config(size: str, vocab_size: int, max_len: int, **overrides: Any) -> ModelConfig:
  """Returns the config of a named size, with strict overrides.

  Args:
    size: a key of `SIZES` ("3m", "25m", "113m", "403m", "2b", "tiny", "mini").
    vocab_size: input and output vocabulary (M1: 258; M2: 256 or 65,536).
    max_len: attention window in positions.
    **overrides: any other `ModelConfig` field, e.g. dtype="bfloat16", num_layers=2.

  Raises:
    ValueError: unknown size, unknown override key, or a value of the wrong type.
  """
  if size not in SIZES:
    raise ValueError(f"unknown model size {size!r}; valid sizes: {', '.join(SIZES)}")
  row = dataclasses.asdict(SIZES[size])
  row.pop("description")
  _check_keys(overrides, allowed=set(field_names()) - {"vocab_size", "max_len"})
  values = {**row, "vocab_size": vocab_size, "max_len": max_len, **overrides}
  return ModelConfig(**values)


def field_names() -> tuple[str, ...]:
  """Names of all `ModelConfig` fields, in declaration order."""
  return tuple(f.name for f in dataclasses.fields(ModelConfig))


def to_dict(config: ModelConfig) -> dict[str, Any]:
  """Returns the resolved config as a JSON-able dict."""
  return dataclasses.asdict(config)


def from_dict(values: Mapping[str, Any]) -> ModelConfig:
  """Inverse of `to_dict`; every field except those with defaults is required.

  Raises:
    ValueError: unknown or missing keys, or a value of the wrong type.
  """
  _check_keys(values, allowed=set(field_names()))
  required = [f.name for f in dataclasses.fields(ModelConfig)
              if f.default is dataclasses.MISSING and f.name not in values]
  if required:
    raise ValueError(f"model config is missing {', '.join(required)}")
  return ModelConfig(**values)


def parse_override(key: str, text: str) -> Any:
  """Parses a command-line override value ("num_layers", "4" -> 4) by the field's type.

  Raises:
    ValueError: unknown key or unparsable value.
  """
  _check_keys({key: None}, allowed=set(field_names()))
  kind = typing.get_type_hints(ModelConfig)[key]
  if kind is bool:
    if text.lower() not in ("true", "false", "1", "0"):
      raise ValueError(f"{key} expects true/false, got {text!r}")
    return text.lower() in ("true", "1")
  try:
    return kind(text)
  except ValueError:
    raise ValueError(f"{key} expects {kind.__name__}, got {text!r}") from None


def _check_keys(values: Mapping[str, Any], allowed: set[str]) -> None:
  unknown = sorted(set(values) - allowed)
  if unknown:
    valid = ", ".join(n for n in field_names() if n in allowed)
    raise ValueError(f"unknown model config key(s) {', '.join(unknown)}; valid keys: {valid}")


def _check_types(cls: type, values: Mapping[str, Any]) -> None:
  hints = typing.get_type_hints(cls)
  for name, value in values.items():
    kind = hints[name]
    ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
      ok = True
    if not ok:
      raise ValueError(f"ModelConfig.{name} must be {kind.__name__}, got {type(value).__name__} "
                       f"{value!r}; valid keys: {', '.join(field_names())}")
