"""Command line interface: ``qlib-prefect run / rolling / data / task-pool / serve / demo``."""
