"""Exporting compiled models for serving: Triton Inference Server model repositories."""
