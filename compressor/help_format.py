"""The `--help` layout of every eqinfo command: its description as written, and every flag's
default beside the flag."""
import argparse


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
  """Keeps the description's line breaks; adds "(default: X)" to each flag that has one
  (not to required flags, nor to those whose default is None: they have none)."""

  def _get_help_string(self, action: argparse.Action) -> str:
    if action.required or action.default is None:
      return action.help or ""
    return super()._get_help_string(action) or ""
