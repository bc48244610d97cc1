"""Model architectures, checkpoint loading and weight conversion for the pipeline steps."""
