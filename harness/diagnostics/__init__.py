"""What training looked like: GAN health signals, detectors and the monitor; the Parquet
diagnostics rows; TensorBoard scalars."""
