"""Scoring building blocks shared by evaluation, the RLVR verifiers and the inference engine.

- :mod:`olmoflow.scoring.answers`: answer extraction (last number, last ``\\boxed{}``, Minerva's
  "final answer") and normalisation;
- :mod:`olmoflow.scoring.math`: answer equality (numeric, normalised, symbolic via
  :mod:`olmoflow.scoring.symbolic`);
- :mod:`olmoflow.scoring.code`: code scoring in the sandbox with an unforgeable verdict;
- :mod:`olmoflow.scoring.instructions`: instruction-following checkers.

The package imports no torch and nothing of ``olmoflow.eval`` but the sandbox, so any stage
can use it without import cycles. Import the submodules directly.
"""
