"""AWS implementations of the ports (``chalicelib.ports``): the only modules that import
botocore. Each translates its service's modeled errors into the ports' errors."""
