"""Pruning inside other training frameworks: a PyTorch Lightning callback
(:mod:`prunekit.integrations.lightning`) and a Hugging Face ``Trainer`` callback
(:mod:`prunekit.integrations.hf_trainer`).

Nothing is imported here: each submodule imports its framework when it is itself imported,
and raises :class:`~prunekit.MissingDependencyError` (an
``ImportError``) naming the extra to install when the framework is missing.
"""
