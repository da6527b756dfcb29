"""Local tooling for `make run` and `make test`: starts the services the console needs."""
