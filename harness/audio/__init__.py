"""Audio: log-mel features, corpus readers with deterministic batches, the built-in corpus."""
