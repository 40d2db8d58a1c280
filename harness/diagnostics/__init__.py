"""What training looked like, recorded and judged.

- ``signals``    health signals a recipe computes from real and generated audio
- ``modes``      mode coverage of the toy mixtures
- ``detectors``  the health settings, detector scores and the stop reason
- ``monitor``    a trial's rows in; shares, scores, peaks and flags out
- ``telemetry``  the Parquet diagnostics rows, crash-safe
- ``tensorboard`` the same rows as TensorBoard scalars
"""
