"""Benchmarks run serially: timings gathered under xdist are unreliable (failure case B33)."""
