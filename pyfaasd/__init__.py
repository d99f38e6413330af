"""pyfaasd: the command-line interface and the composition root of the services."""
