"""esc-eval: evaluate emotional-support conversation models by simulation, the way ESC-Eval does.

Everything importable lives under this name; the repository keeps the rooms at its root (``agents/``,
``environments/``, ``roles/``, ``runs/``, ``testing/``) and ``esc_eval/`` links them, so the installed
package is ``esc_eval.agents``, ``esc_eval.runs``, ... and nothing else lands at the top of site-packages.
"""

__all__ = ["agents", "environments", "roles", "runs", "testing"]
