"""Layer 4, synthetic data with known motion: the beating-heart CT phantom (configuration, motion, anatomy,
rendering, files, verification), scoring a run against its true motion, and a small synthetic pair."""
