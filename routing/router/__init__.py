"""The learned router: the probability that a cheap model's answer would be worse than a premium
model's, estimated from the prompt's text on the CPU, with no call out.

- `features`: prompt text → sparse term counts and dense shape features (pure).
- `model`: the artifact (one JSON file), loaded once per process, and its scorer (pure Python).
- `train`: rebuilds an artifact from labelled rows (numpy), bit-for-bit from the same inputs.
- `metrics`: APGR, CPT and the cost-quality curve of any scores against outcomes (pure).
- `store`: which artifact is active, kept versions and rollback.
"""
