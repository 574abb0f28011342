"""olmoflow: the fully open OLMo 2 / OLMo 3 model flow in one package."""

__version__ = "0.1.0"
