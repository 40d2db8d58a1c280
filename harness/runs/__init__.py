"""One run (a trial, a confirmation seed, a rerun): config -> recipe -> trainer -> reports; and the
generator-only preflight."""
