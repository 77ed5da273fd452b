"""LightningDataModules on real public data, their downloads and the one batching path."""
