"""Inference: predictions on features (`rgbtad infer`) and detection on videos (`rgbtad detect`)."""
