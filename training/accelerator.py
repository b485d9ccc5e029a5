"""`--accelerator gpu|tpu|cpu|auto`: the device a command must run on, checked before any work.

JAX falls back to the CPU when it finds no GPU or TPU (a missing driver, a library
path not set), with one log line; a rented accelerator would then sit idle while
the job runs on CPUs. Asking for one makes its absence a one-line error instead.
"""
import jax

CHOICES = ("auto", "cpu", "gpu", "tpu")
_HINTS = {
    "gpu": "install jax[cuda12] and the NVIDIA driver (on GKE the driver's libraries are in "
           "/usr/local/nvidia/lib64: put it on LD_LIBRARY_PATH)",
    "tpu": "run on a TPU VM with jax[tpu] installed",
}


def add_flag(parser) -> None:
  """Adds --accelerator to an argparse parser."""
  parser.add_argument("--accelerator", default="auto", choices=CHOICES,
                      help="gpu or tpu: stop with an error unless JAX sees one; cpu: run on the "
                      "host CPU; auto: whatever JAX finds")


def require(kind: str) -> None:
  """Checks (or, for "cpu", selects) the JAX backend before any work; "auto" touches nothing
  (no backend starts for a command, or a worker, that never runs JAX).

  Raises:
    ValueError: a GPU or TPU was asked for and JAX sees none.
  """
  if kind not in CHOICES:
    raise ValueError(f"--accelerator must be one of {CHOICES}, got {kind!r}")
  if kind == "auto":
    return
  if kind == "cpu":  # set before a backend starts; does not start one itself
    jax.config.update("jax_platforms", "cpu")
    return
  backend = jax.default_backend()
  if backend != kind:
    raise ValueError(f"--accelerator {kind}: JAX sees no {kind.upper()} here (it would run on "
                     f"{backend}); {_HINTS[kind]}, or pass --accelerator cpu")
