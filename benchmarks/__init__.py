"""Benchmarks: each runs our server and a peer side by side and prints a ratio (see README.md)."""
