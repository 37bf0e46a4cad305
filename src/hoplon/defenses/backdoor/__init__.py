"""Model-level backdoor defences: Neural Cleanse (trigger reverse-engineering) and STRIP (runtime detector)."""

from hoplon.defenses.backdoor.neural_cleanse import MIN_SAMPLES, NeuralCleanse, NeuralCleanseResult
from hoplon.defenses.backdoor.strip import STRIP, STRIPDetector

__all__ = ["MIN_SAMPLES", "STRIP", "NeuralCleanse", "NeuralCleanseResult", "STRIPDetector"]
