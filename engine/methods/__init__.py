"""Methods that plug into the training loop (`engine.training`): each a config (`configs.py`,
light) and an implementation of `engine.training.method.Method`. The registry
(`engine.registry`) names them for `lumen3d train`, `export` and `view`."""
