"""Verification: artifacts against the stored PyTorch references (`compare`), the references themselves,
the metrics every judgement uses, and the per-block diagnosis of an artifact's error."""
