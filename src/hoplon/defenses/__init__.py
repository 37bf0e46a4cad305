"""Defenses: training recipes, runtime defenses and certifiers that harden a model."""
