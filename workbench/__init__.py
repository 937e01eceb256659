"""Prompt Workbench: versioned prompts, local models, stored and comparable runs."""

__version__ = "0.1.0"
