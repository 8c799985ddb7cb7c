"""Throughput benchmarks of ciml-ter; results as JSON under benchmarks/results/."""
