"""Running experiments: the named experiments, config -> model and data, training, executors."""
