"""Speech quality scores: the metric registry, PESQ / STOI / SI-SNR and the rest, the composite
measures, DNSMOS and pitch, and the process pool they are scored in."""
