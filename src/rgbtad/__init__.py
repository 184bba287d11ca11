"""rgbtad: temporal action detection from RGB video alone, with cross-modal distillation."""

__version__ = "0.1.0"
